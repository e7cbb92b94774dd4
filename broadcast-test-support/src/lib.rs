//! Test support for the broadcast workspace, shared by the integration tests
//! of `broadcast-examples` and by `broadcast-bench`. Not published.
//!
//! - [`sio_client`]: a Socket.IO v5 client over a websocket, and its packet codec.
//! - [`server`]: a real axum + socketioxide server on a loopback port.
//! - [`redis`]: `redis-server` processes and clusters on free loopback ports,
//!   and commands to them through fred.
//! - [`ports`]: free loopback ports, never the shared Redis's.
//! - [`postgres`]: a fresh database per test on the machine's PostgreSQL.
//! - [`process`]: children that die with the process that started them.
//! - [`env`](mod@env): the CI policy (a missing binary skips loudly outside CI and
//!   fails in CI) and temp dirs.
//! - [`HarnessError`]: the one error of all of them.

pub mod env;
mod error;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod server;
pub mod sio_client;

pub use error::HarnessError;
