//! The mail dictionary the sealer compresses with (`bramble-proto`'s `dict/mail-1.zdict`): how
//! it is made, so anyone can make it again and check it is the one shipped.
//!
//! It is trained with zstd's own trainer on messages from the corpus generator with a seed of
//! its own ([`TRAIN_SEED`]), never the seed `bramble bench seal` measures with, so the
//! benchmark's messages are not among those it learnt from. The generator's vocabulary and
//! templates are still the same on both sides: `docs/benchmarks.md` says what that means for
//! the figure, and how it does on mail written by others.
//!
//! Owns: the training recipe. Must not touch: the sealer (it only reads the result).

use crate::BenchError;
use crate::corpus::Corpus;

/// The training corpus's seed (not [`crate::seal::SEED`]).
pub const TRAIN_SEED: u64 = 0x0D1C_7A11_0000_0001;
/// Messages trained on.
pub const TRAIN_MESSAGES: usize = 4000;
/// The dictionary's largest size, in bytes.
pub const DICT_SIZE: usize = 32 * 1024;

/// Trains the dictionary: the same bytes every time (zstd's trainer is deterministic).
///
/// # Errors
/// When zstd's trainer fails.
pub fn train() -> Result<Vec<u8>, BenchError> {
    let samples = Corpus::new(TRAIN_SEED).messages(TRAIN_MESSAGES);
    zstd::dict::from_samples(&samples, DICT_SIZE)
        .map_err(|e| BenchError::Run(format!("zstd could not train a dictionary: {e}")))
}

#[cfg(test)]
mod tests {
    /// The shipped dictionary is what the recipe makes: anyone can check it and make the next.
    #[test]
    fn the_shipped_dictionary_is_the_trained_one() -> Result<(), crate::BenchError> {
        let d = super::train()?;
        assert!(
            d == bramble_proto::MAIL_DICTIONARY,
            "crates/proto/dict/mail-1.zdict is not what bramble_bench::dict::train makes \
             ({} bytes against {}); a changed dictionary needs a new codec number",
            bramble_proto::MAIL_DICTIONARY.len(),
            d.len()
        );
        Ok(())
    }
}
