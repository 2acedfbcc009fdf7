//! Ingest against a real redis-server: HTTP end to end with the API and every class of bad input; the fault
//! suite ([`faults`]) runs the real processes and breaks them, Redis and Postgres on purpose.

mod batch;
mod defences;
mod end_to_end;
mod faults;
mod stack;
