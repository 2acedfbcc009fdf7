//! The Lua scripts, loaded once per store. Writes that must be atomic are scripts because a script runs
//! without interleaving and, unlike MULTI, can decide from what it reads (ownership, cursors).

use fred::types::scripts::Script;

/// A script that uses the leader-set functions: `lua/leaders.lua` prepended to it (Redis scripts cannot share
/// code otherwise, short of Redis Functions).
macro_rules! window_script {
    ($file:literal) => {
        Script::from_lua(concat!(
            include_str!("lua/leaders.lua"),
            include_str!($file)
        ))
    };
}

/// Every script the store runs, by what it does.
#[derive(Clone)]
pub(super) struct Scripts {
    pub append: Script,
    pub apply: Script,
    pub retire: Script,
    pub fill: Script,
    pub seal: Script,
    pub read_bucket: Script,
    pub group_state: Script,
    pub close_minutes: Script,
}

impl Scripts {
    pub fn load() -> Self {
        Self {
            append: Script::from_lua(include_str!("lua/append.lua")),
            apply: window_script!("lua/apply.lua"),
            retire: window_script!("lua/retire.lua"),
            fill: window_script!("lua/fill.lua"),
            seal: window_script!("lua/seal.lua"),
            read_bucket: window_script!("lua/read_bucket.lua"),
            group_state: Script::from_lua(include_str!("lua/group_state.lua")),
            close_minutes: Script::from_lua(include_str!("lua/close_minutes.lua")),
        }
    }
}
