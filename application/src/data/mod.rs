//! Data types the ports and the use cases speak in, beside both: they import nothing of either
//! (only each other and the aggregate registry), so a port can name them without depending on
//! a use case, and every use case can use them without a circle.
//!
//! `event_log`: events as stored and their codec; `message`: events as published and consumed;
//! `hash_chain`: the per-aggregate chain over stored events; `metadata`: who and why of a
//! command; `trace`: W3C trace ids; `table`: a read model's table described as data (columns,
//! cells, filters); `checkpoint`, `views`, `data_key`: what their ports return.

pub mod checkpoint;
pub mod data_key;
pub mod event_log;
pub mod hash_chain;
pub mod message;
pub mod metadata;
pub mod table;
pub mod trace;
pub mod views;
