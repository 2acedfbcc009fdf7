//! `topk send`: ids from the arguments or stdin (or, with `--csv`, `video_id,at[,count]` rows from stdin:
//! past views imported at their own time), counted per id and time in batches, each `POST /v1/views` under
//! an `Idempotency-Key` of its own and sent again under the same key after a transient failure.

use crate::args::{SendArgs, Token};
use crate::client::{self, endpoint, Answer, RequestError};
use crate::format::{print, print_json, thousands};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
use std::time::Duration;

/// Longest wait between two sends of a batch, whatever `Retry-After` says.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Longest time a batch is sent again for, from its first send: well within the default 300 s that ingest
/// remembers an Idempotency-Key (`TOPK_IDEMPOTENCY_RETENTION_SECS`), so a retry can never store a batch twice
/// because its key was forgotten meanwhile.
const RETRY_FOR: Duration = Duration::from_secs(240);

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let target = Target {
        http: client::http(&args.http)?,
        url: endpoint(&args.ingest_url, &["v1", "views"]),
        token: args.token.clone(),
        retries: args.retries,
    };
    // One random part per run and a batch number: a key is never reused for another batch, so the server
    // can tell a retry (same key, same batch) from new views.
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut sent = Sent::default();
    let mut batch = Batch::default();
    let records: Box<dyn Iterator<Item = anyhow::Result<Record>>> = if args.csv {
        anyhow::ensure!(
            args.ids.is_empty() && args.at.is_none(),
            "--csv reads every view and its time from stdin: give no ids and no --at with it"
        );
        Box::new(csv_records())
    } else {
        let at = args.at.clone();
        Box::new(ids(&args.ids).map(move |id| {
            let id = id.map_err(|e| anyhow::anyhow!("reading ids from stdin: {e}"))?;
            Ok(Record {
                id,
                at: at.clone(),
                count: 1,
                line: None,
            })
        }))
    };
    for record in records {
        let record = record.map_err(|e| match sent.batches {
            0 => e,
            _ => anyhow::anyhow!(
                "{e}\ntopk: accepted before this failure: {} (those are stored)",
                sent.describe()
            ),
        })?;
        batch.push(record);
        if batch.pushed == args.batch_size {
            sent.send(&target, &run_id, std::mem::take(&mut batch), args.json)
                .await?;
        }
    }
    if batch.pushed > 0 {
        sent.send(&target, &run_id, batch, args.json).await?;
    }
    if !args.json {
        print(&format!("accepted {}\n", sent.describe()))?;
    }
    Ok(())
}

/// Where batches go, and how hard to try.
struct Target {
    http: reqwest::Client,
    url: Url,
    token: Option<Token>,
    retries: u32,
}

/// Every id to send: the arguments in order, stdin's lines in place of `-`, or stdin alone when there are
/// none. Lines are trimmed (so `\r\n` ends one as well) and empty lines skipped; anything else goes to the
/// server as it is, which says what is wrong with an id.
fn ids(args: &[String]) -> Box<dyn Iterator<Item = std::io::Result<String>> + '_> {
    if args.is_empty() {
        if std::io::stdin().is_terminal() {
            // Not an error (ids may be typed), but a silent wait would look like a hang.
            eprintln!("topk: reading video ids from stdin, one per line (end with Ctrl-D)");
        }
        return Box::new(stdin_ids());
    }
    Box::new(args.iter().flat_map(|a| -> Box<dyn Iterator<Item = _>> {
        if a == "-" {
            Box::new(stdin_ids())
        } else {
            Box::new(std::iter::once(Ok(a.clone())))
        }
    }))
}

/// Stdin's non-empty lines, trimmed. Read with blocking calls: the runtime runs nothing else meanwhile.
fn stdin_ids() -> impl Iterator<Item = std::io::Result<String>> {
    std::io::stdin()
        .lock()
        .lines()
        .filter_map(|line| match line {
            Ok(l) if l.trim().is_empty() => None,
            Ok(l) => Some(Ok(l.trim().to_owned())),
            Err(e) => Some(Err(e)),
        })
}

/// `video_id,at[,count]` rows from stdin (`--csv`): a first row `video_id,at...` is a header and skipped, as
/// are empty rows. A row without an id or a time, or with a count that is not a number, stops the run
/// naming its line; the time and the id are checked by the server, whose 400 names the line too.
fn csv_records() -> impl Iterator<Item = anyhow::Result<Record>> {
    std::io::stdin()
        .lock()
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let line = match line {
                Ok(l) => l,
                Err(e) => return Some(Err(anyhow::anyhow!("reading views from stdin: {e}"))),
            };
            csv_record(i as u64 + 1, &line).transpose()
        })
}

/// One CSV row, or `None` for a header or an empty row.
fn csv_record(number: u64, line: &str) -> anyhow::Result<Option<Record>> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if line.trim().is_empty() || (number == 1 && fields[0] == "video_id") {
        return Ok(None);
    }
    let bad = |why: &str| anyhow::anyhow!("line {number} of stdin: {why}: {line:?}");
    let (id, at, count) = match fields.as_slice() {
        [id, at] => (*id, *at, 1),
        [id, at, count] => (
            *id,
            *at,
            count
                .parse::<u64>()
                .map_err(|_| bad("the count is not a whole number"))?,
        ),
        _ => return Err(bad("expected video_id,at or video_id,at,count")),
    };
    if id.is_empty() || at.is_empty() {
        return Err(bad("the video id and the time are required"));
    }
    Ok(Some(Record {
        id: id.to_owned(),
        at: Some(at.to_owned()),
        count,
        line: Some(number),
    }))
}

/// Views of one video at one time (or when stored), and the CSV line they came from.
#[derive(Debug)]
struct Record {
    id: String,
    at: Option<String>,
    count: u64,
    line: Option<u64>,
}

/// Views counted per id and time, in the order each first appeared.
#[derive(Default)]
struct Batch {
    elements: Vec<View>,
    index: HashMap<(String, Option<String>), usize>,
    /// Records pushed (ids, or CSV rows), not elements.
    pushed: u32,
}

/// One element of `POST /v1/views`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct View {
    video_id: String,
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<String>,
    /// The first CSV line it holds, for messages.
    #[serde(skip)]
    line: Option<u64>,
}

impl Batch {
    fn push(&mut self, record: Record) {
        self.pushed += 1;
        let key = (record.id, record.at);
        match self.index.get(&key) {
            Some(&i) => self.elements[i].count += record.count,
            None => {
                self.index.insert(key.clone(), self.elements.len());
                self.elements.push(View {
                    video_id: key.0,
                    count: record.count,
                    at: key.1,
                    line: record.line,
                });
            }
        }
    }
}

/// What ingest accepted so far.
#[derive(Default)]
struct Sent {
    views: u64,
    batches: u64,
}

#[derive(Deserialize)]
struct Accepted {
    accepted: u64,
}

impl Sent {
    /// Sends one batch (with retries) and counts it; a failure's message adds which id a 400 names and what was
    /// accepted before.
    async fn send(
        &mut self,
        target: &Target,
        run_id: &str,
        batch: Batch,
        json: bool,
    ) -> anyhow::Result<()> {
        let key = format!("topk-cli-{run_id}-{}", self.batches + 1);
        let body = serde_json::to_string(&batch.elements)?;
        let answer = match post(target, body, key).await {
            Ok(a) => a,
            Err(e) => {
                // The server's message first, then what only the client knows, each on a line of its own.
                let mut message = e.to_string();
                if let Some(id) = named_element(&e, &batch) {
                    // The server counts the elements of the batch, which the user never saw.
                    message.push_str(&format!("\ntopk: element {id}"));
                }
                if self.batches > 0 {
                    message.push_str(&format!(
                        "\ntopk: accepted before this failure: {} (those are stored)",
                        self.describe()
                    ));
                }
                return Err(anyhow::Error::msg(message));
            }
        };
        if json {
            print_json(&answer.body)?;
        }
        let accepted: Accepted = answer.parse(&target.url)?;
        self.views += accepted.accepted;
        self.batches += 1;
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "{} view{} in {} batch{}",
            thousands(self.views),
            if self.views == 1 { "" } else { "s" },
            thousands(self.batches),
            if self.batches == 1 { "" } else { "es" },
        )
    }
}

/// For a 400 that names an element of the batch (`element 3: ...`, counted from 0), which id that is, as
/// `3 of batch 2 is "the id"`.
fn named_element(e: &RequestError, batch: &Batch) -> Option<String> {
    let RequestError::Status {
        status: reqwest::StatusCode::BAD_REQUEST,
        message,
        ..
    } = e
    else {
        return None;
    };
    let (i, _) = message.strip_prefix("element ")?.split_once(':')?;
    let view = batch.elements.get(i.parse::<usize>().ok()?)?;
    Some(match view.line {
        Some(line) => format!("{i} is line {line} of stdin ({:?})", view.video_id),
        None => format!("{i} is {:?}", view.video_id),
    })
}

/// POSTs one batch under `key`, sending it again (same key, same body) after a transient failure: after the
/// server's `Retry-After` when it gave one, else after a doubling backoff.
async fn post(target: &Target, body: String, mut key: String) -> Result<Answer, RequestError> {
    let mut attempt = 0;
    let first_sent = std::time::Instant::now();
    loop {
        let mut request = target
            .http
            .post(target.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", &key)
            .body(body.clone());
        if let Some(token) = &target.token {
            request = request.bearer_auth(token.expose());
        }
        let e = match client::send(request, &target.url).await {
            Ok(answer) => return Ok(answer),
            Err(e) if e.is_transient() && attempt < target.retries => e,
            Err(e) => return Err(e),
        };
        let mut wait = backoff(attempt);
        if let RequestError::Status {
            retry_after,
            idempotency_key,
            ..
        } = &e
        {
            if let Some(secs) = retry_after {
                wait = Duration::from_secs(*secs).min(MAX_WAIT);
            }
            // A partly stored batch (Redis Cluster) names the key that completes it; it is ours, unless a
            // proxy rewrote it.
            if let Some(k) = idempotency_key {
                key.clone_from(k);
            }
        }
        if first_sent.elapsed() + wait > RETRY_FOR {
            eprintln!(
                "topk: giving up on this batch: its retries would outlast the {} s its Idempotency-Key is \
                 surely remembered",
                RETRY_FOR.as_secs()
            );
            return Err(e);
        }
        attempt += 1;
        eprintln!(
            "topk: {e}; sending the batch again in {:.1}s (retry {attempt} of {})",
            wait.as_secs_f64(),
            target.retries
        );
        tokio::time::sleep(wait).await;
    }
}

/// 250 ms, 500 ms, 1 s, ... up to 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 << attempt.min(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_counts_views_per_id_in_first_seen_order() {
        let mut batch = Batch::default();
        for id in ["b", "a", "b", "c", "b"] {
            batch.push(Record {
                id: id.into(),
                at: None,
                count: 1,
                line: None,
            });
        }
        assert_eq!(batch.pushed, 5);
        assert_eq!(
            serde_json::to_string(&batch.elements).unwrap(),
            r#"[{"videoId":"b","count":3},{"videoId":"a","count":1},{"videoId":"c","count":1}]"#
        );
    }

    #[test]
    fn csv_rows_count_per_id_and_time() {
        let rows = [
            "video_id,at,count",
            "a,2026-12-01T10:00:00Z,3",
            "",
            " a , 2026-12-01T10:00:00Z ",
            "a,2026-12-01T11:00:00Z,2",
        ];
        let mut batch = Batch::default();
        for (i, row) in rows.iter().enumerate() {
            if let Some(record) = csv_record(i as u64 + 1, row).unwrap() {
                batch.push(record);
            }
        }
        assert_eq!(
            serde_json::to_string(&batch.elements).unwrap(),
            r#"[{"videoId":"a","count":4,"at":"2026-12-01T10:00:00Z"},{"videoId":"a","count":2,"at":"2026-12-01T11:00:00Z"}]"#
        );
        for bad in [
            "a",
            "a,,1",
            "a,2026-12-01T10:00:00Z,x",
            "a,b,1,2",
            ",2026-12-01T10:00:00Z",
        ] {
            let e = csv_record(7, bad).unwrap_err().to_string();
            assert!(e.starts_with("line 7 of stdin: "), "{bad}: {e}");
        }
        // A header only counts as one on the first line.
        assert!(csv_record(2, "video_id,at").unwrap().is_some());
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(30), Duration::from_secs(8));
    }
}
