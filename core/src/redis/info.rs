//! Redis's `INFO` text (`field:value` lines under `# Section` headings), parsed in one place: the fields by
//! name, their numbers, and the connected replicas of `INFO replication`.

use std::collections::HashMap;

/// One `INFO` reply, parsed.
#[derive(Debug, Clone, Default)]
pub struct Info {
    fields: HashMap<String, String>,
}

/// A replica as its primary's `INFO replication` lists it (`slave0:ip=...,port=...,state=online,offset=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// `online` once its first sync is done.
    pub state: String,
    /// The replication offset it has acknowledged.
    pub offset: u64,
}

impl Info {
    /// Parses an `INFO` reply (any sections).
    pub fn parse(text: &str) -> Self {
        let fields = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Self { fields }
    }

    /// A field's text, if the reply has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// A field's number, if the reply has it and it is one.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.field(name)?.parse().ok()
    }

    /// Every replica `INFO replication` lists, in no particular order.
    pub fn replicas(&self) -> Vec<ReplicaInfo> {
        self.fields
            .iter()
            .filter(|(k, _)| k.starts_with("slave") && k[5..].bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|(_, v)| {
                let part = |name: &str| {
                    v.split(',')
                        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                };
                Some(ReplicaInfo {
                    state: part("state")?.to_owned(),
                    offset: part("offset")?.parse().ok()?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_numbers_and_replicas() {
        let info = Info::parse(
            "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
             slave0:ip=127.0.0.1,port=7001,state=online,offset=120,lag=0\r\n\
             slave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=1\r\n\
             master_replid:abc123\r\nmaster_repl_offset:130\r\n\r\n# CPU\r\nused_cpu_sys:1.50\r\n",
        );
        assert_eq!(info.field("role"), Some("master"));
        assert_eq!(info.field("master_replid"), Some("abc123"));
        assert_eq!(info.number("master_repl_offset"), Some(130.0));
        assert_eq!(info.number("used_cpu_sys"), Some(1.5));
        assert_eq!(info.number("role"), None);
        assert_eq!(info.field("missing"), None);
        let mut replicas = info.replicas();
        replicas.sort_by_key(|r| r.offset);
        assert_eq!(
            replicas,
            [
                ReplicaInfo {
                    state: "wait_bgsave".into(),
                    offset: 0
                },
                ReplicaInfo {
                    state: "online".into(),
                    offset: 120
                }
            ]
        );
    }
}
