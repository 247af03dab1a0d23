//! The command line, in two steps as ripgrep's `lowargs` and `hiargs`:
//! `args` is what clap parses (raw flags, one struct per subcommand), and
//! `validated` turns that, in one place, into an [`Invocation`]: the Kafka
//! settings and the library's own option structs, every value checked
//! (files read, ranges checked, `-X` keys checked against the guarantee)
//! before anything connects anywhere. The binary runs what it is given.

pub mod args;
pub mod validated;

pub use args::{Cli, LogFormat};
pub use validated::{Invocation, Run};
