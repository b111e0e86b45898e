//! Data types the ports speak in, beside the ports and the use cases: they import nothing of
//! either, so a port can name them without depending on a use case.

pub mod checkpoint;
pub mod data_key;
pub mod views;
