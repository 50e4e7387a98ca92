//! The image layer of berth's engine: a content-addressed store, sources (docker/OCI
//! archives, registries), layer unpacking and bundles made from images.

pub mod chunks;
pub mod digest;
pub mod types;
pub mod passwd;
pub mod seccomp_profile;
pub mod bundle;
pub mod reference;
pub mod registry;
pub mod unpack;
pub mod store;
pub mod archive;
pub mod import;
pub mod pull;
pub mod cli;
