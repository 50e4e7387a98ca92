//! The image layer of berth's engine: a content-addressed store, sources (docker/OCI
//! archives, registries), layer unpacking and bundles made from images.

pub mod archive;
pub mod bundle;
pub mod check;
pub mod chunks;
pub mod cli;
pub mod commit;
pub mod digest;
pub mod distribution;
pub mod history;
pub mod import;
pub mod login;
pub mod passwd;
pub mod pgzip;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod save;
pub mod seccomp_profile;
pub mod store;
pub mod tarread;
pub mod types;
pub mod unpack;
pub mod upper_layer;
