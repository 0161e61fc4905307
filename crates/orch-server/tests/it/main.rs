//! Integration tests of orch-server: a real engine over a real SQLite file and a real git
//! repository, served on a loopback port and driven by a minimal HTTP/1.1 client.

mod api;
mod attacks;
mod dashboard;
mod doors;
mod notifications;
mod notify_receiver;
mod support;
mod tracker_deliveries;
mod webhooks;
