//! `topk video`: `GET /v1/videos/{id}`, views per window (and rank, when the API sends it).

use crate::args::VideoArgs;
use crate::client::{self, endpoint};
use crate::format::{print, print_json, table, thousands, Align};
use serde::Deserialize;

/// One video's views per window; `rank` only from an API that ranks it (absent before that).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoViews {
    pub video_id: String,
    pub minute: u64,
    pub hour: u64,
    pub day: u64,
    pub all: u64,
    #[serde(default)]
    pub rank: Option<Ranks>,
}

/// The video's rank per window: none when it is not ranked there.
#[derive(Debug, Default, Deserialize)]
pub struct Ranks {
    #[serde(default)]
    pub minute: Option<u64>,
    #[serde(default)]
    pub hour: Option<u64>,
    #[serde(default)]
    pub day: Option<u64>,
    #[serde(default)]
    pub all: Option<u64>,
}

pub async fn run(args: VideoArgs) -> anyhow::Result<()> {
    let url = endpoint(&args.api.api_url, &["v1", "videos", &args.id]);
    let answer = client::get(&args.api, &url).await?;
    if args.json {
        return print_json(&answer.body);
    }
    print(&render(&answer.parse(&url)?))
}

fn render(v: &VideoViews) -> String {
    let ranks = v.rank.as_ref();
    let windows = [
        ("minute", v.minute, ranks.map(|r| r.minute)),
        ("hour", v.hour, ranks.map(|r| r.hour)),
        ("day", v.day, ranks.map(|r| r.day)),
        ("all", v.all, ranks.map(|r| r.all)),
    ];
    let rows: Vec<Vec<String>> = windows
        .iter()
        .map(|(name, views, rank)| {
            let mut row = vec![name.to_string(), thousands(*views)];
            if let Some(rank) = rank {
                row.push(rank.map_or("-".into(), thousands));
            }
            row
        })
        .collect();
    let mut header = vec![("window", Align::Left), ("views", Align::Right)];
    if ranks.is_some() {
        header.push(("rank", Align::Right));
    }
    format!("video {}\n{}", v.video_id, table(&header, &rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_print_per_window_and_ranks_when_present() {
        let plain: VideoViews =
            serde_json::from_str(r#"{"videoId":"abc","minute":1,"hour":2,"day":3000,"all":4000}"#)
                .unwrap();
        assert_eq!(
            render(&plain),
            "video abc\nwindow  views\nminute      1\nhour        2\nday     3,000\nall     4,000\n"
        );
        let ranked: VideoViews = serde_json::from_str(
            r#"{"videoId":"abc","minute":0,"hour":2,"day":3,"all":4,
                "rank":{"minute":null,"hour":1,"day":12,"all":1500}}"#,
        )
        .unwrap();
        assert_eq!(
            render(&ranked),
            "video abc\nwindow  views   rank\nminute      0      -\nhour        2      1\nday         3     12\nall         4  1,500\n"
        );
    }
}
