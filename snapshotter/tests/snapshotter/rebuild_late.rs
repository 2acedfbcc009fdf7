//! `rebuild-redis` after back-dated views: with Redis's windows lost but its log kept (as in
//! `rebuild::rebuild_replays_the_log_after_the_checkpoint`), the rebuild, the workers replaying the log and the
//! snapshotter running again leave every view counted once in the day and all-time windows, in `video_stats` at
//! its own minute and in `video_totals`. Checked against a brute-force model over random schedules that
//! rebuild at random moments: back-dated entries applied with their late views written, applied with them
//! still in the late stream, or not yet applied; on-time entries among them; before and after the checkpoint.

use crate::helpers::block_on_case;
use crate::late::{check, schedule};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Views on time and back-dated by up to more than a day, applied late or not yet, with the retirer, the
    /// snapshotter and `rebuild-redis` at random moments: in the end Postgres and the day and all-time windows
    /// hold every view once, as the model counts them.
    #[test]
    fn rebuild_counts_every_back_dated_view_once((steps, first) in schedule(0.3, 16)) {
        block_on_case("rebuild_late", |label| async move { check(steps, first, &label).await });
    }
}
