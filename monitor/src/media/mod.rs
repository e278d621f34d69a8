//! What a media flow's first payload bytes say: the decoders (TLS records, MS-TURN's
//! pseudo-TLS hello, MS-TURN and RFC 4571 framing, STUN of both styles) and the verdict
//! built on them, pure functions of bytes and times; `flows` keeps each flow's samples
//! over ticks until its verdict is final, `json` is the verdict as the JSON summary shows
//! it, `alerting` (with `alert_config`, its TOML keys) decides the two media alerts from
//! it. The collector hands in the samples, the flow table keeps what comes out. Nothing
//! here imports another module of the crate.

pub mod alert_config;
pub mod alerting;
pub mod flows;
pub mod json;
pub mod pseudo_tls;
pub mod stream;
pub mod stun;
pub mod tls;
pub mod turn;
pub mod verdict;

#[cfg(test)]
mod alerting_tests;
#[cfg(test)]
mod flows_tests;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tshark;
#[cfg(test)]
mod verdict_tests;
