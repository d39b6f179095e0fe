//! The client against a real channel file and a real signal socket served by a
//! producer written in Rust (`shmbridge::client::rust_producer`).
