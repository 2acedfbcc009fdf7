//! `topk range`: `GET /v1/topk/range`, printed as a table with the range the API summed.

use crate::args::{RangeArgs, RankingArgs};
use crate::client::{self, endpoint};
use crate::format::{print, print_json};
use crate::top::{ranking_table, Ranked};
use serde::Deserialize;

/// The API's answer: the range summed, how finely, how far history goes, and the ranking.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeRanking {
    pub from: String,
    pub to: String,
    pub history_through: Option<String>,
    pub resolution: String,
    pub videos: Vec<Ranked>,
}

pub async fn run(args: RangeArgs) -> anyhow::Result<()> {
    let RankingArgs { k, json, api } = &args.ranking;
    let mut url = endpoint(&api.api_url, &["v1", "topk", "range"]);
    url.query_pairs_mut()
        .append_pair("from", &args.from)
        .append_pair("to", &args.to)
        .append_pair("k", &k.to_string());
    let answer = client::get(api, &url).await?;
    if *json {
        return print_json(&answer.body);
    }
    print(&render(&answer.parse(&url)?))
}

/// The table (or a line saying the range had no views), then the range summed and how far history goes.
fn render(r: &RangeRanking) -> String {
    let mut out = if r.videos.is_empty() {
        format!("no views from {} to {}\n", r.from, r.to)
    } else {
        ranking_table(&r.videos)
    };
    out.push_str(&format!("from {} to {}", r.from, r.to));
    if r.resolution != "minute" {
        out.push_str(&format!(
            " (whole {}s: history there is kept per {})",
            r.resolution, r.resolution
        ));
    }
    out.push('\n');
    match &r.history_through {
        Some(t) => out.push_str(&format!("history through the minute of {t}\n")),
        None => out.push_str("no history written yet\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::tests::two_videos;

    fn ranking(videos: Vec<Ranked>, resolution: &str) -> RangeRanking {
        RangeRanking {
            from: "2026-12-01T00:00:00Z".into(),
            to: "2026-12-08T00:00:00Z".into(),
            history_through: Some("2026-12-07T10:41:00Z".into()),
            resolution: resolution.into(),
            videos,
        }
    }

    #[test]
    fn a_range_prints_as_a_table_with_the_range_summed() {
        assert_eq!(
            render(&ranking(two_videos(), "minute")),
            "rank      views  video\n   1  1,234,567  abc\n   2          3  x\n\
             from 2026-12-01T00:00:00Z to 2026-12-08T00:00:00Z\n\
             history through the minute of 2026-12-07T10:41:00Z\n"
        );
        assert_eq!(
            render(&ranking(vec![], "hour")),
            "no views from 2026-12-01T00:00:00Z to 2026-12-08T00:00:00Z\n\
             from 2026-12-01T00:00:00Z to 2026-12-08T00:00:00Z (whole hours: history there is kept per hour)\n\
             history through the minute of 2026-12-07T10:41:00Z\n"
        );
    }
}
