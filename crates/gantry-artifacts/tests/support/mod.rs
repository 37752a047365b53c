//! What the artifact store's integration tests share.

pub mod moto;
