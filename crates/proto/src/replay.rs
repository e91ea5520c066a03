//! The replay window: which sequence numbers a receiver has already accepted.
//!
//! A sliding bitmap of the last [`ReplayWindow::SIZE`] sequence numbers below the highest
//! seen, as in IPsec (RFC 4303 §3.4.3) and WireGuard: frames may arrive out of order within
//! the window; a number seen before, or one older than the window, is refused.

/// A sequence number the receiver must refuse.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum ReplayError {
    /// Sequence number 0 is never sent.
    #[error("sequence number 0 is never valid")]
    Zero,
    /// This number was accepted before: a replayed frame.
    #[error("frame {seq} was already received (replayed)")]
    Replayed {
        /// The sequence number.
        seq: u64,
    },
    /// This number is older than the window can tell apart.
    #[error("frame {seq} is older than the replay window (newest is {highest})")]
    TooOld {
        /// The sequence number.
        seq: u64,
        /// The highest accepted.
        highest: u64,
    },
}

const WORDS: usize = 16;

/// Accepted sequence numbers of one direction of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u64,
    /// Bit `i` (word `i / 64`, bit `i % 64`) is set when `highest - i` was accepted.
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::new()
    }
}

impl ReplayWindow {
    /// How many sequence numbers below the highest are remembered.
    pub const SIZE: u64 = (WORDS * 64) as u64;

    /// A window that has accepted nothing.
    pub fn new() -> ReplayWindow {
        ReplayWindow {
            highest: 0,
            bits: [0; WORDS],
        }
    }

    /// A window restored after a restart from the highest number accepted before it: every
    /// number up to and including `highest` is refused, so nothing can be replayed across a
    /// restart (at the price of refusing stragglers that were still in flight).
    pub fn restored(highest: u64) -> ReplayWindow {
        ReplayWindow {
            highest,
            bits: [u64::MAX; WORDS],
        }
    }

    /// The highest sequence number accepted so far (0 when none).
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Whether `seq` would be accepted; changes nothing. Call before the (costlier) decryption.
    ///
    /// # Errors
    /// A [`ReplayError`] saying why not.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::Zero);
        }
        if seq > self.highest {
            return Ok(());
        }
        let age = self.highest - seq;
        if age >= Self::SIZE {
            return Err(ReplayError::TooOld {
                seq,
                highest: self.highest,
            });
        }
        if self.bit(age) {
            return Err(ReplayError::Replayed { seq });
        }
        Ok(())
    }

    /// Records `seq` as accepted. Call only after the frame authenticated.
    ///
    /// # Errors
    /// As [`ReplayWindow::check`]; nothing changes then.
    pub fn accept(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        if seq > self.highest {
            self.shift(seq - self.highest);
            self.highest = seq;
            self.set(0);
        } else {
            self.set(self.highest - seq);
        }
        Ok(())
    }

    fn bit(&self, age: u64) -> bool {
        let (w, b) = ((age / 64) as usize, age % 64);
        self.bits[w] & (1 << b) != 0
    }

    fn set(&mut self, age: u64) {
        let (w, b) = ((age / 64) as usize, age % 64);
        self.bits[w] |= 1 << b;
    }

    /// Ages every remembered number by `by`.
    fn shift(&mut self, by: u64) {
        if by >= Self::SIZE {
            self.bits = [0; WORDS];
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        for i in (0..WORDS).rev() {
            let src = i.checked_sub(words);
            let hi = src.map_or(0, |s| self.bits[s]);
            let lo = src
                .and_then(|s| s.checked_sub(1))
                .map_or(0, |s| self.bits[s]);
            self.bits[i] = if bits == 0 {
                hi
            } else {
                (hi << bits) | (lo >> (64 - bits))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn in_order_and_replay() {
        let mut w = ReplayWindow::new();
        for s in 1..=100 {
            w.accept(s).expect("fresh");
        }
        assert_eq!(w.accept(50), Err(ReplayError::Replayed { seq: 50 }));
        assert_eq!(w.accept(0), Err(ReplayError::Zero));
    }

    #[test]
    fn out_of_order_within_window() {
        let mut w = ReplayWindow::new();
        w.accept(10).expect("fresh");
        w.accept(5).expect("older but inside the window");
        w.accept(7).expect("older but inside the window");
        assert_eq!(w.accept(5), Err(ReplayError::Replayed { seq: 5 }));
        w.accept(2000).expect("jump ahead");
        assert_eq!(
            w.accept(2000 - ReplayWindow::SIZE),
            Err(ReplayError::TooOld {
                seq: 2000 - ReplayWindow::SIZE,
                highest: 2000
            })
        );
        w.accept(2000 - ReplayWindow::SIZE + 1)
            .expect("oldest still inside");
    }

    #[test]
    fn restored_window_refuses_everything_up_to_highest() {
        let w = ReplayWindow::restored(500);
        assert_eq!(w.check(500), Err(ReplayError::Replayed { seq: 500 }));
        assert_eq!(w.check(499), Err(ReplayError::Replayed { seq: 499 }));
        assert!(w.check(501).is_ok());
    }

    proptest! {
        /// The window agrees with a set of everything seen, for numbers inside the window.
        #[test]
        fn matches_a_set(seqs in proptest::collection::vec(1u64..3000, 1..400)) {
            let mut w = ReplayWindow::new();
            let mut seen = HashSet::new();
            for s in seqs {
                let highest = w.highest();
                let got = w.accept(s);
                if seen.contains(&s) {
                    prop_assert!(got.is_err());
                } else if s + ReplayWindow::SIZE <= highest {
                    prop_assert_eq!(got, Err(ReplayError::TooOld { seq: s, highest }));
                } else {
                    prop_assert!(got.is_ok());
                    seen.insert(s);
                }
            }
        }
    }
}
