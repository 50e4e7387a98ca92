//! `berth image build`: Dockerfile builds. The parser and word expansion follow Docker's
//! frontend (moby/buildkit); each RUN is a container of berth's own runtime over an overlay
//! of the stage's snapshots, and its upper directory becomes the new layer.

pub mod ignore;
pub mod parser;
pub mod shell;
