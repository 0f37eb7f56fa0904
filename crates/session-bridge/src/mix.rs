//! The mixer of one bridge: one sum per 20 ms tick, shared by every member, and per-pair gains
//! applied as corrections to it.
//!
//! # How a tick is mixed
//!
//! Every member's input frame (pulled from its jitter buffer) goes into one sum, unless
//! the member is muted. What listener `l` hears is, per sample,
//!
//! ```text
//! out(l) = sum − x(l)·[l contributed] + Σ over l's pair gains (g(l,t) − 1)·x(t)·[t contributed]
//! ```
//!
//! saturated to 16 bits only at the end (sums are 64-bit, so no bridge size overflows them). Without pair gains this is plain mix-minus: one
//! addition per member for the sum and one subtraction per listener, O(N) per tick. A pair
//! gain costs one multiply-add per tick for its listener, so the whole tick is O(N + K) for K
//! pair gains: a supervisor that nobody hears (monitor) is N − 1 pairs, a whisper to one member
//! is N − 2, and any other gain (say −6 dB from one talker to one listener) is exact, because
//! the corrections work on the unsaturated sum.
//!
//! This is why the bridge does not use `session_media::mixer::Mixer`: it has no pair gains,
//! and its outputs are already saturated, so they cannot be corrected afterwards.

use session_media::{AudioFrame, FRAME_SAMPLES};

/// A gain from one talker to one listener, in Q12 fixed point: [`Gain::UNITY`] (1.0) is the
/// default, [`Gain::ZERO`] means the listener does not hear the talker, and the largest is
/// [`Gain::MAX`] (4.0, +12 dB).
///
/// A mixer tick sums every unmuted member's frame once; a listener hears that sum minus its
/// own frame, plus `(gain − 1) × frame` for each talker it has a gain for, saturated to 16
/// bits only at the end. Without gains a tick is O(N); each gain adds one multiply-add for
/// its listener, and the result is exact for any gain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gain(u16);

impl Gain {
    const ONE: i32 = 1 << 12;
    /// Silence: the listener does not hear the talker.
    pub const ZERO: Self = Self(0);
    /// 1.0: the talker as it is (the default for every pair).
    pub const UNITY: Self = Self(1 << 12);
    /// 4.0 (+12 dB), the largest gain.
    pub const MAX: Self = Self(4 << 12);

    /// A gain from a linear ratio, clamped to 0.0–4.0 (NaN is zero).
    pub fn from_ratio(ratio: f32) -> Self {
        if ratio.is_nan() || ratio <= 0.0 {
            return Self::ZERO;
        }
        let q = (ratio.min(4.0) * Self::ONE as f32).round();
        Self(q as u16)
    }

    /// A gain in decibels (−∞ is zero; above +12 dB is clamped).
    pub fn from_db(db: f32) -> Self {
        Self::from_ratio(10f32.powf(db / 20.0))
    }

    /// The linear ratio.
    pub fn ratio(self) -> f32 {
        f32::from(self.0) / Self::ONE as f32
    }

    /// True for [`Gain::ZERO`].
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// True for [`Gain::UNITY`].
    pub fn is_unity(self) -> bool {
        self == Self::UNITY
    }

    /// The correction factor `g − 1` in Q12.
    fn delta(self) -> i32 {
        i32::from(self.0) - Self::ONE
    }
}

impl Default for Gain {
    fn default() -> Self {
        Self::UNITY
    }
}

/// The per-bridge mixing scratch: inputs of the tick and their sum. Its vectors keep their
/// capacity from tick to tick, so a tick allocates only when the bridge grew.
#[derive(Debug, Default)]
pub(crate) struct MixBus {
    sum: Vec<i64>,
    inputs: Vec<AudioFrame>,
    contributed: Vec<bool>,
}

impl MixBus {
    /// Starts a tick.
    pub(crate) fn begin(&mut self) {
        self.sum.clear();
        self.sum.resize(FRAME_SAMPLES, 0);
        self.inputs.clear();
        self.contributed.clear();
    }

    /// Adds the next member's input (members are numbered in the order they are pushed).
    /// A member that does not contribute (muted) is kept for its index, out of the sum.
    pub(crate) fn push(&mut self, frame: AudioFrame, contributes: bool) {
        let contributes = contributes && !frame.is_silent();
        if contributes {
            for (acc, &s) in self.sum.iter_mut().zip(frame.samples()) {
                *acc += i64::from(s);
            }
        }
        self.inputs.push(frame);
        self.contributed.push(contributes);
    }

    /// Drops the scratch's memory (the bridge stopped mixing).
    pub(crate) fn release(&mut self) {
        *self = Self::default();
    }

    /// What member `listener` hears: the sum minus its own input, corrected by its pair gains
    /// `(talker index, gain)`. Pairs naming the listener itself or an index out of range are
    /// ignored.
    pub(crate) fn output(
        &self,
        listener: usize,
        gains: impl IntoIterator<Item = (usize, Gain)>,
    ) -> AudioFrame {
        let mut acc = [0i64; FRAME_SAMPLES];
        for (a, &s) in acc.iter_mut().zip(&self.sum) {
            *a = s;
        }
        if self.contributed.get(listener).copied().unwrap_or(false)
            && let Some(own) = self.inputs.get(listener)
        {
            for (a, &s) in acc.iter_mut().zip(own.samples()) {
                *a -= i64::from(s);
            }
        }
        for (talker, gain) in gains {
            if talker == listener || !self.contributed.get(talker).copied().unwrap_or(false) {
                continue;
            }
            let Some(input) = self.inputs.get(talker) else {
                continue;
            };
            let delta = i64::from(gain.delta());
            for (a, &s) in acc.iter_mut().zip(input.samples()) {
                *a += (delta * i64::from(s)) >> 12;
            }
        }
        let mut out = AudioFrame::silence();
        for (o, &a) in out.samples_mut().iter_mut().zip(&acc) {
            *o = a.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(v: i16) -> AudioFrame {
        AudioFrame::from_samples(&[v; FRAME_SAMPLES])
    }

    #[test]
    fn gains_convert() {
        assert_eq!(Gain::from_ratio(1.0), Gain::UNITY);
        assert_eq!(Gain::from_ratio(-1.0), Gain::ZERO);
        assert_eq!(Gain::from_ratio(f32::NAN), Gain::ZERO);
        assert_eq!(Gain::from_ratio(100.0), Gain::MAX);
        assert_eq!(Gain::from_db(f32::NEG_INFINITY), Gain::ZERO);
        assert!((Gain::from_db(-6.0).ratio() - 0.501).abs() < 0.001);
        assert!(Gain::default().is_unity() && Gain::ZERO.is_zero());
    }

    #[test]
    fn mix_minus_with_pair_gains() {
        let mut bus = MixBus::default();
        bus.begin();
        bus.push(constant(1000), true); // 0
        bus.push(constant(2000), true); // 1
        bus.push(constant(4000), false); // 2: muted
        bus.push(constant(300), true); // 3
        assert_eq!(bus.output(0, []).samples()[0], 2300);
        assert_eq!(bus.output(2, []).samples()[0], 3300, "muted still hears");
        // Listener 3 hears talker 1 at half and talker 0 not at all.
        let out = bus.output(3, [(1, Gain::from_ratio(0.5)), (0, Gain::ZERO)]);
        assert_eq!(out.samples()[0], 1000);
        // Gains on itself or on a muted talker change nothing.
        assert_eq!(
            bus.output(0, [(0, Gain::ZERO), (2, Gain::MAX)]).samples()[0],
            2300
        );
    }

    proptest::proptest! {
        /// The corrected mix equals a naive per-pair mix for any inputs, mutes and gains.
        #[test]
        fn equals_the_naive_per_pair_mix(
            people in proptest::collection::vec((proptest::num::i16::ANY, proptest::bool::ANY), 1..8),
            pairs in proptest::collection::vec((0usize..8, 0usize..8, 0u16..=(4 << 12)), 0..20),
        ) {
            let mut bus = MixBus::default();
            bus.begin();
            for &(level, muted) in &people {
                bus.push(constant(level), !muted);
            }
            let n = people.len();
            for listener in 0..n {
                let mine: Vec<(usize, Gain)> = pairs
                    .iter()
                    .filter(|p| p.0 == listener && p.1 < n)
                    .map(|&(_, t, g)| (t, Gain(g)))
                    .collect();
                let mut expected = 0i64;
                for (t, &(level, muted)) in people.iter().enumerate() {
                    if t == listener || muted {
                        continue;
                    }
                    // The last gain given for a pair wins, as the engine keeps one per pair.
                    let g = mine.iter().rev().find(|p| p.0 == t).map_or(Gain::UNITY, |p| p.1);
                    expected += i64::from(level) * i64::from(g.0) / 4096;
                }
                let mut dedup: Vec<(usize, Gain)> = Vec::new();
                for &(t, g) in mine.iter().rev() {
                    if !dedup.iter().any(|p| p.0 == t) {
                        dedup.push((t, g));
                    }
                }
                let got = i64::from(bus.output(listener, dedup).samples()[5]);
                let clamped = expected.clamp(-32768, 32767);
                // Each correction (and each naive term) rounds by less than one unit.
                proptest::prop_assert!((got - clamped).abs() <= 2 * n as i64, "{got} vs {clamped}");
            }
        }
    }
}
