//! ec2lab: a hands-on EC2 lab on one Linux host.
//!
//! Map of the modules (each owns one concern; see its `//!` header):
//!
//! | module     | owns |
//! |------------|------|
//! | `cli`      | the user-facing subcommands; a thin, signing client of the API |
//! | `serve`    | the daemon's start-up, signals and shutdown |
//! | `api`      | HTTP server for the Query protocol: SigV4, form decoding, XML, error mapping |
//! | `cloud`    | the control plane: resources, rules and state machines over the store |
//! | `ami`      | AMI directory images; the built-in `lab-linux`
//! | `store`    | SQLite persistence: one transaction per change, schema version |
//! | `keys`     | key generation, PEM/OpenSSH/PPK codecs, AWS fingerprints |
//! | `datadir`  | the data dir layout, lab credentials, AWS profile files |
//! | `ratelimit`| what a client can trigger: log lines (rate-limited), connections (capped per source and in total), descriptors (a reserve for accept loops) |
//! | `front`    | listeners on public IPs: live security-group checks, TCP proxy into instances |
//! | `runtime`  | makes instances real: volumes, host keys, sandboxes, IMDS, exit watch |
//! | `sandbox`  | namespaces, overlay root, cgroups, PID 1, entering an instance |
//! | `userdata` | cloud-init formats, run once per instance by PID 1 |
//! | `imds`     | the metadata service inside each instance |
//!
//! Flow of a request: `api` parses into a typed action → `cloud` decides and records it in
//! `store` → the answer is written as EC2 XML.

pub mod ami;
pub mod api;
pub mod cli;
pub mod cloud;
pub mod datadir;
pub mod front;
pub mod gateway;
pub mod imds;
pub mod initsys;
pub mod keys;
pub mod ratelimit;
pub mod runtime;
pub mod sandbox;
pub mod serve;
pub mod store;
pub mod userdata;
pub mod vpc;
