//! The Lua scripts, loaded once per store. Writes that must be atomic are scripts because a script runs
//! without interleaving and, unlike MULTI, can decide from what it reads (ownership, cursors).

/// One Lua script: its source, and the SHA-1 that EVALSHA names it by.
#[derive(Clone)]
pub(in crate::redis) struct Lua {
    pub source: &'static str,
    pub sha: String,
}

impl Lua {
    fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: ::redis::Script::new(source).get_hash().to_owned(),
        }
    }
}

/// A script that uses the leader-set functions: `lua/leaders.lua` prepended to it (Redis scripts cannot share
/// code otherwise, short of Redis Functions).
macro_rules! window_script {
    ($file:literal) => {
        Lua::new(concat!(
            include_str!("../lua/leaders.lua"),
            include_str!($file)
        ))
    };
}

/// Every script the store runs, by what it does.
#[derive(Clone)]
pub(in crate::redis) struct Scripts {
    pub append: Lua,
    pub claim_key: Lua,
    pub append_source: Lua,
    pub dead_letter: Lua,
    pub apply: Lua,
    pub retire: Lua,
    pub fill: Lua,
    pub seal: Lua,
    pub read_bucket: Lua,
    pub leaders_read: Lua,
    pub group_state: Lua,
    pub close_minutes: Lua,
}

impl Scripts {
    pub fn load() -> Self {
        Self {
            append: Lua::new(include_str!("../lua/append.lua")),
            claim_key: Lua::new(include_str!("../lua/claim_key.lua")),
            append_source: Lua::new(include_str!("../lua/append_source.lua")),
            dead_letter: Lua::new(include_str!("../lua/dead_letter.lua")),
            apply: window_script!("../lua/apply.lua"),
            retire: window_script!("../lua/retire.lua"),
            fill: window_script!("../lua/fill.lua"),
            seal: window_script!("../lua/seal.lua"),
            read_bucket: window_script!("../lua/read_bucket.lua"),
            leaders_read: Lua::new(include_str!("../lua/leaders_read.lua")),
            group_state: Lua::new(include_str!("../lua/group_state.lua")),
            close_minutes: Lua::new(include_str!("../lua/close_minutes.lua")),
        }
    }
}
