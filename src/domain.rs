// The reference itself is markdown (src/domain.md), written once and read
// both here and on GitHub.
#![doc = include_str!("domain.md")]
