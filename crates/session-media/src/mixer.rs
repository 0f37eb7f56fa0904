//! N-party mix-minus: every participant hears everyone except itself.
//!
//! The mixer is sans-IO and driven by a 20 ms tick the caller owns (session-bridge may run it
//! on a dedicated thread): push each participant's frame for the tick, call [`Mixer::tick`],
//! read each participant's output. The cost is linear: the full sum of all contributions is
//! computed once in `i32`, then each output is that sum minus the participant's own
//! contribution, saturated to `i16` only at the end.
//!
//! ```
//! use session_media::{AudioFrame, mixer::Mixer};
//!
//! let mut mixer = Mixer::new();
//! let a = mixer.add_participant();
//! let b = mixer.add_participant();
//! let c = mixer.add_participant();
//! mixer.push_frame(a, &AudioFrame::from_samples(&[1000; 160]));
//! mixer.push_frame(b, &AudioFrame::from_samples(&[10; 160]));
//! mixer.tick();
//! assert_eq!(mixer.output(a).unwrap().samples()[0], 10);   // hears b only
//! assert_eq!(mixer.output(b).unwrap().samples()[0], 1000); // hears a only
//! assert_eq!(mixer.output(c).unwrap().samples()[0], 1010); // hears both
//! assert_eq!(mixer.loudest(), Some(a));
//! ```

use crate::frame::{AudioFrame, FRAME_SAMPLES};

/// Handle of a participant in one [`Mixer`]: a slot and the slot's generation, so a handle of
/// a removed participant never reaches the one that reuses its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId {
    slot: u32,
    generation: u32,
}

#[derive(Debug, Clone)]
struct Participant {
    id: ParticipantId,
    input: AudioFrame,
    has_input: bool,
    muted: bool,
    /// Whether `input` went into this tick's sum.
    contributed: bool,
    energy: u64,
    output: AudioFrame,
}

/// The mixer. Participants live in a slab (a vector of slots reused after removal), so a
/// handle finds its participant in O(1).
#[derive(Debug, Clone)]
pub struct Mixer {
    slots: Vec<Option<Participant>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    count: usize,
    sum: [i32; FRAME_SAMPLES],
    speech_threshold: u64,
}

impl Default for Mixer {
    fn default() -> Self {
        Self::new()
    }
}

impl Mixer {
    /// Mean-square energy above which a participant counts as speaking (about -40 dBFS).
    pub const DEFAULT_SPEECH_THRESHOLD: u64 = 100_000;

    /// An empty mixer.
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            count: 0,
            sum: [0; FRAME_SAMPLES],
            speech_threshold: Self::DEFAULT_SPEECH_THRESHOLD,
        }
    }

    /// Sets the energy threshold for [`Mixer::is_speaking`].
    pub fn set_speech_threshold(&mut self, threshold: u64) {
        self.speech_threshold = threshold;
    }

    /// Adds a participant.
    pub fn add_participant(&mut self) -> ParticipantId {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let generation = self.generations.get(slot as usize).copied().unwrap_or(0);
        let id = ParticipantId { slot, generation };
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = Some(Participant {
                id,
                input: AudioFrame::silence(),
                has_input: false,
                muted: false,
                contributed: false,
                energy: 0,
                output: AudioFrame::silence(),
            });
        }
        self.count += 1;
        id
    }

    /// Removes a participant; false if it was not there.
    pub fn remove_participant(&mut self, id: ParticipantId) -> bool {
        if self.get_mut(id).is_none() {
            return false;
        }
        if let Some(s) = self.slots.get_mut(id.slot as usize) {
            *s = None;
        }
        if let Some(g) = self.generations.get_mut(id.slot as usize) {
            *g = g.wrapping_add(1);
        }
        self.free.push(id.slot);
        self.count -= 1;
        true
    }

    /// Number of participants.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True without participants.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn get(&self, id: ParticipantId) -> Option<&Participant> {
        self.slots
            .get(id.slot as usize)?
            .as_ref()
            .filter(|p| p.id == id)
    }

    fn get_mut(&mut self, id: ParticipantId) -> Option<&mut Participant> {
        self.slots
            .get_mut(id.slot as usize)?
            .as_mut()
            .filter(|p| p.id == id)
    }

    fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.slots.iter().flatten()
    }

    /// Mutes or unmutes what a participant says (it still hears the others).
    pub fn set_muted(&mut self, id: ParticipantId, muted: bool) -> bool {
        match self.get_mut(id) {
            Some(p) => {
                p.muted = muted;
                true
            }
            None => false,
        }
    }

    /// Gives a participant's frame for the coming tick (a second push replaces the first).
    /// A participant without a frame contributes nothing to that tick.
    pub fn push_frame(&mut self, id: ParticipantId, frame: &AudioFrame) -> bool {
        match self.get_mut(id) {
            Some(p) => {
                p.input = *frame;
                p.has_input = true;
                true
            }
            None => false,
        }
    }

    /// Mixes one 20 ms tick: full sum once, then each output is the sum minus its own input.
    pub fn tick(&mut self) {
        self.sum = [0; FRAME_SAMPLES];
        for p in self.slots.iter_mut().flatten() {
            p.contributed = p.has_input && !p.muted;
            p.energy = if p.has_input && !p.muted {
                p.input.energy()
            } else {
                0
            };
            if p.contributed {
                for (acc, &s) in self.sum.iter_mut().zip(p.input.samples()) {
                    *acc += i32::from(s);
                }
            }
        }
        for p in self.slots.iter_mut().flatten() {
            let out = p.output.samples_mut();
            if p.contributed {
                for ((o, &acc), &own) in out.iter_mut().zip(&self.sum).zip(p.input.samples()) {
                    *o = saturate(acc - i32::from(own));
                }
            } else {
                for (o, &acc) in out.iter_mut().zip(&self.sum) {
                    *o = saturate(acc);
                }
            }
            p.has_input = false;
        }
    }

    /// What a participant hears after the last tick.
    pub fn output(&self, id: ParticipantId) -> Option<&AudioFrame> {
        self.get(id).map(|p| &p.output)
    }

    /// Every participant's output after the last tick.
    pub fn outputs(&self) -> impl Iterator<Item = (ParticipantId, &AudioFrame)> {
        self.participants().map(|p| (p.id, &p.output))
    }

    /// Energy a participant contributed in the last tick (0 when muted or silent).
    pub fn energy(&self, id: ParticipantId) -> Option<u64> {
        self.get(id).map(|p| p.energy)
    }

    /// Whether a participant's last contribution was above the speech threshold.
    pub fn is_speaking(&self, id: ParticipantId) -> bool {
        self.energy(id).is_some_and(|e| e >= self.speech_threshold)
    }

    /// The participant with the most energy in the last tick, if anyone spoke.
    pub fn loudest(&self) -> Option<ParticipantId> {
        self.participants()
            .filter(|p| p.energy >= self.speech_threshold)
            .max_by_key(|p| p.energy)
            .map(|p| p.id)
    }
}

#[inline]
fn saturate(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(v: i16) -> AudioFrame {
        AudioFrame::from_samples(&[v; FRAME_SAMPLES])
    }

    #[test]
    fn mix_minus_matches_naive_mix() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut mixer = Mixer::new();
        let ids: Vec<_> = (0..12).map(|_| mixer.add_participant()).collect();
        let inputs: Vec<AudioFrame> = ids
            .iter()
            .map(|_| {
                let s: Vec<i16> = (0..FRAME_SAMPLES).map(|_| rng.i16(-4000..4000)).collect();
                AudioFrame::from_samples(&s)
            })
            .collect();
        for (id, f) in ids.iter().zip(&inputs) {
            mixer.push_frame(*id, f);
        }
        mixer.tick();
        for (i, id) in ids.iter().enumerate() {
            for n in 0..FRAME_SAMPLES {
                let naive: i32 = inputs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, f)| i32::from(f.samples()[n]))
                    .sum();
                assert_eq!(
                    i32::from(mixer.output(*id).unwrap().samples()[n]),
                    naive.clamp(-32768, 32767)
                );
            }
        }
    }

    proptest::proptest! {
        /// Mix-minus equals the naive mix of everyone else, with random mutes, missing inputs,
        /// removals and loud (saturating) signals.
        #[test]
        fn equals_naive_mix(
            people in proptest::collection::vec((proptest::num::i16::ANY, 0u8..4), 1..12),
        ) {
            let mut mixer = Mixer::new();
            let ids: Vec<_> = people.iter().map(|_| mixer.add_participant()).collect();
            // flag 0: speaks, 1: muted, 2: silent (no frame), 3: removed.
            for (id, &(level, flag)) in ids.iter().zip(&people) {
                match flag {
                    1 => { mixer.push_frame(*id, &constant(level)); mixer.set_muted(*id, true); }
                    2 => {}
                    3 => { mixer.remove_participant(*id); }
                    _ => { mixer.push_frame(*id, &constant(level)); }
                }
            }
            mixer.tick();
            for (i, id) in ids.iter().enumerate() {
                let expected: i32 = people
                    .iter()
                    .enumerate()
                    .filter(|&(j, &(_, flag))| j != i && flag == 0)
                    .map(|(_, &(level, _))| i32::from(level))
                    .sum();
                match mixer.output(*id) {
                    Some(out) => proptest::prop_assert_eq!(
                        i32::from(out.samples()[17]),
                        expected.clamp(-32768, 32767)
                    ),
                    None => proptest::prop_assert_eq!(people[i].1, 3),
                }
            }
        }
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let mut mixer = Mixer::new();
        let ids: Vec<_> = (0..4).map(|_| mixer.add_participant()).collect();
        for id in &ids {
            mixer.push_frame(*id, &constant(20_000));
        }
        let listener = mixer.add_participant();
        mixer.tick();
        assert_eq!(mixer.output(listener).unwrap().samples()[0], i16::MAX);
        assert_eq!(mixer.output(ids[0]).unwrap().samples()[0], i16::MAX);
        for id in &ids {
            mixer.push_frame(*id, &constant(-20_000));
        }
        mixer.tick();
        assert_eq!(mixer.output(listener).unwrap().samples()[0], i16::MIN);
    }

    #[test]
    fn mute_and_missing_input() {
        let mut mixer = Mixer::new();
        let a = mixer.add_participant();
        let b = mixer.add_participant();
        let c = mixer.add_participant();
        mixer.push_frame(a, &constant(1000));
        mixer.push_frame(b, &constant(2000));
        mixer.set_muted(b, true);
        mixer.tick();
        assert_eq!(mixer.output(c).unwrap().samples()[0], 1000);
        assert_eq!(
            mixer.output(b).unwrap().samples()[0],
            1000,
            "muted still hears"
        );
        assert_eq!(mixer.output(a).unwrap().samples()[0], 0);
        assert_eq!(mixer.energy(b), Some(0));
        // Inputs are consumed by a tick: the next tick without pushes is silent.
        mixer.tick();
        assert!(mixer.outputs().all(|(_, f)| f.is_silent()));
    }

    #[test]
    fn talker_detection_and_removal() {
        let mut mixer = Mixer::new();
        let a = mixer.add_participant();
        let b = mixer.add_participant();
        mixer.push_frame(a, &constant(200));
        mixer.push_frame(b, &constant(3000));
        mixer.tick();
        assert_eq!(mixer.loudest(), Some(b));
        assert!(mixer.is_speaking(b));
        assert!(!mixer.is_speaking(a));
        assert!(mixer.remove_participant(b));
        assert!(!mixer.remove_participant(b));
        assert!(!mixer.push_frame(b, &constant(1)));
        mixer.tick();
        assert_eq!(mixer.loudest(), None);
        assert_eq!(mixer.len(), 1);
        // The freed slot is reused, and the old handle does not reach the new participant.
        let c = mixer.add_participant();
        assert_ne!(b, c);
        assert!(!mixer.set_muted(b, true));
        assert!(mixer.set_muted(c, true));
    }
}
