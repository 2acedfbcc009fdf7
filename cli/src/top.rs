//! `topk top`: `GET /v1/topk`, printed as a table.

use crate::args::{RankingArgs, TopArgs};
use crate::client::{self, endpoint};
use crate::format::{print, print_json, table, thousands, Align};
use serde::Deserialize;

/// One entry of a ranking.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ranked {
    pub video_id: String,
    pub views: u64,
}

/// The header with the moment the ranking was read from Redis.
const AS_OF: &str = "topk-as-of";

pub async fn run(args: TopArgs) -> anyhow::Result<()> {
    let RankingArgs { k, json, api } = &args.ranking;
    let mut url = endpoint(&api.api_url, &["v1", "topk"]);
    url.query_pairs_mut()
        .append_pair("window", args.window.as_str())
        .append_pair("k", &k.to_string());
    let answer = client::get(api, &url).await?;
    if *json {
        return print_json(&answer.body);
    }
    let ranking: Vec<Ranked> = answer.parse(&url)?;
    let as_of = answer.headers.get(AS_OF).and_then(|v| v.to_str().ok());
    print(&render(&ranking, args.window.describe(), as_of))
}

/// The table, or a line saying the window is empty; then the as-of line when the API sent one.
fn render(ranking: &[Ranked], window: &str, as_of: Option<&str>) -> String {
    let mut out = if ranking.is_empty() {
        format!("no views in {window}\n")
    } else {
        ranking_table(ranking)
    };
    if let Some(t) = as_of {
        out.push_str(&format!("as of {t}\n"));
    }
    out
}

/// A ranking as a table: rank, views, video.
pub(crate) fn ranking_table(ranking: &[Ranked]) -> String {
    let rows: Vec<Vec<String>> = ranking
        .iter()
        .enumerate()
        .map(|(i, r)| vec![(i + 1).to_string(), thousands(r.views), r.video_id.clone()])
        .collect();
    table(
        &[
            ("rank", Align::Right),
            ("views", Align::Right),
            ("video", Align::Left),
        ],
        &rows,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// abc with 1,234,567 views, then x with 3: wide and narrow numbers, for the tables of `top` and `range`.
    pub(crate) fn two_videos() -> Vec<Ranked> {
        vec![
            Ranked {
                video_id: "abc".into(),
                views: 1_234_567,
            },
            Ranked {
                video_id: "x".into(),
                views: 3,
            },
        ]
    }

    #[test]
    fn a_ranking_prints_as_a_table_with_its_time() {
        assert_eq!(
            render(&two_videos(), "the last hour", Some("2026-01-02T03:04:05.678Z")),
            "rank      views  video\n   1  1,234,567  abc\n   2          3  x\nas of 2026-01-02T03:04:05.678Z\n"
        );
        assert_eq!(
            render(&[], "the last day", None),
            "no views in the last day\n"
        );
    }
}
