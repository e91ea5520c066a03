//! The relay over real TLS on 127.0.0.1, driven by a small test client.

mod exchange;
mod hostile;
mod queue;
mod srp;
mod support;
