// `sqlx::migrate!` embeds the migrations at compile time, but cargo does not know it reads that folder:
// without this, a new migration file would not rebuild the crate and would silently not be applied.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
