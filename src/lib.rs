//! Test and benchmark support for the broadcast workspace: a small Socket.IO
//! client, a harness for real `redis-server` processes, and server helpers.
//! Not published.

pub mod client;
pub mod redis_server;
pub mod server;
