//! Test audio: the built-in melody, tones encoded with libopus, and what a listener heard,
//! decoded and measured.
//!
//! libopus is used only here, and only with the `tones` feature (on in every test and bench, off
//! in the release build, which must not link libopus: switchboard's relay never decodes). Without
//! it a [`ToneEncoder`] cannot be made ([`AudioError::NoTones`]) and a [`Listener`] measures
//! nothing (what it heard is always empty). The built-in [`MELODY`] needs no libopus: it is
//! already Opus, sent packet by packet.

/// The built-in melody: an Ogg/Opus file (read it with [`crate::media::ogg::read`]), 4 s, mono,
/// 20 ms frames, ~20 kbit/s, 12 KB: eight soft sine notes (C5 E5 G5 E5 D5 F5 A5 G5, half a
/// second each). The simulated caller plays it in a loop unless told to play something else.
///
/// Made with Debian's sox and opus-tools (libopus 1.3.1):
/// ```sh
/// i=0; for n in C5 E5 G5 E5 D5 F5 A5 G5; do i=$((i+1))
///   sox -n -r 48000 -c 1 -b 16 n$i.wav synth 0.5 sine $n fade q 0.02 0.5 0.15 vol 0.35; done
/// sox n?.wav melody.wav
/// opusenc --bitrate 20 --framesize 20 --downmix-mono --serial 1 melody.wav src/media/melody.opus
/// ```
pub const MELODY: &[u8] = crate::media::ogg::MELODY;

/// Whether this build can make and measure tones (the `tones` feature: libopus linked).
pub const TONES: bool = cfg!(feature = "tones");

/// Samples per 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
const RATE: f64 = 48_000.0;

/// Errors of test audio.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// libopus failed.
    #[cfg(feature = "tones")]
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// This build cannot make tones.
    #[error("no tones in this build: it was built without the `tones` feature (no libopus)")]
    NoTones,
}

#[cfg(feature = "tones")]
pub use libopus::{Listener, ToneEncoder};
#[cfg(not(feature = "tones"))]
pub use without_libopus::{Listener, ToneEncoder};

#[cfg(feature = "tones")]
mod libopus {
    use std::collections::VecDeque;

    use super::{AudioError, FRAME_SAMPLES, RATE};

    /// A sine tone, encoded to Opus 20 ms frames (mono, VoIP mode, ~20 kbps like WhatsApp's).
    pub struct ToneEncoder {
        encoder: opus::Encoder,
        freq: f64,
        phase: f64,
        pcm: Vec<i16>,
        out: Vec<u8>,
    }

    impl ToneEncoder {
        /// A tone of `freq` Hz.
        pub fn new(freq: f64) -> Result<ToneEncoder, AudioError> {
            let mut encoder =
                opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)?;
            encoder.set_bitrate(opus::Bitrate::Bits(20_000))?;
            Ok(ToneEncoder {
                encoder,
                freq,
                phase: 0.0,
                pcm: vec![0; FRAME_SAMPLES],
                out: vec![0; 1500],
            })
        }

        /// The next 20 ms frame.
        pub fn next_frame(&mut self) -> Result<Vec<u8>, AudioError> {
            let step = 2.0 * std::f64::consts::PI * self.freq / RATE;
            for s in self.pcm.iter_mut() {
                *s = (self.phase.sin() * 8000.0) as i16;
                self.phase = (self.phase + step) % (2.0 * std::f64::consts::PI);
            }
            let n = self.encoder.encode(&self.pcm, &mut self.out)?;
            Ok(self.out[..n].to_vec())
        }
    }

    /// Decodes what a peer hears and keeps the last second of it for measurement.
    pub struct Listener {
        decoder: opus::Decoder,
        pcm: VecDeque<i16>,
        frame: Vec<i16>,
        /// Frames that failed to decode (not Opus, or corrupt).
        pub undecodable: u64,
    }

    impl Listener {
        /// A new listener.
        pub fn new() -> Result<Listener, AudioError> {
            Ok(Listener {
                decoder: opus::Decoder::new(48_000, opus::Channels::Mono)?,
                pcm: VecDeque::with_capacity(48_000),
                frame: vec![0; 5760],
                undecodable: 0,
            })
        }

        /// Feeds one Opus packet.
        pub fn push(&mut self, payload: &[u8]) {
            match self.decoder.decode(payload, &mut self.frame, false) {
                Ok(n) => {
                    self.pcm.extend(&self.frame[..n]);
                    while self.pcm.len() > 48_000 {
                        self.pcm.pop_front();
                    }
                }
                Err(_) => self.undecodable += 1,
            }
        }

        /// The last `ms` milliseconds heard (up to one second).
        pub fn recent(&self, ms: usize) -> Vec<i16> {
            let n = (ms * 48).min(self.pcm.len());
            self.pcm.iter().skip(self.pcm.len() - n).copied().collect()
        }
    }
}

#[cfg(not(feature = "tones"))]
mod without_libopus {
    use super::AudioError;

    /// A sine tone encoder; this build has none (no `tones` feature).
    pub struct ToneEncoder(());

    impl ToneEncoder {
        /// Always [`AudioError::NoTones`]: this build has no libopus.
        pub fn new(_freq: f64) -> Result<ToneEncoder, AudioError> {
            Err(AudioError::NoTones)
        }

        /// Never reached: no `ToneEncoder` can be made in this build.
        pub fn next_frame(&mut self) -> Result<Vec<u8>, AudioError> {
            Err(AudioError::NoTones)
        }
    }

    /// A listener that hears without decoding (no `tones` feature): nothing to measure.
    pub struct Listener {
        /// Always 0: nothing is decoded.
        pub undecodable: u64,
    }

    impl Listener {
        /// A new listener.
        pub fn new() -> Result<Listener, AudioError> {
            Ok(Listener { undecodable: 0 })
        }

        /// Feeds one Opus packet, which is not decoded in this build.
        pub fn push(&mut self, _payload: &[u8]) {}

        /// Always empty in this build.
        pub fn recent(&self, _ms: usize) -> Vec<i16> {
            Vec::new()
        }
    }
}

/// The loudest frequency in `pcm` (48 kHz), searched from 100 Hz to 4 kHz in 10 Hz steps with
/// the Goertzel algorithm, and the signal's RMS (full scale = 1.0). `None` when the signal is
/// silence (RMS below 0.003).
pub fn dominant_frequency(pcm: &[i16]) -> Option<(f64, f64)> {
    if pcm.is_empty() {
        return None;
    }
    let x: Vec<f64> = pcm.iter().map(|s| f64::from(*s) / 32768.0).collect();
    let rms = (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt();
    if rms < 0.003 {
        return None;
    }
    let mut best = (0.0, 0.0);
    let mut f = 100.0;
    while f <= 4000.0 {
        let p = goertzel(&x, f);
        if p > best.1 {
            best = (f, p);
        }
        f += 10.0;
    }
    Some((best.0, rms))
}

fn goertzel(x: &[f64], freq: f64) -> f64 {
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / RATE).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for v in x {
        let s = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

#[cfg(all(test, feature = "tones"))]
mod tests {
    use super::*;

    #[test]
    fn the_melody_plays_its_notes() {
        let melody = crate::media::ogg::read(MELODY).unwrap();
        let mut lis = Listener::new().unwrap();
        // C5 E5 G5 E5 D5 F5 A5 G5, 25 packets each: measure the middle of each note.
        let mut heard = vec![];
        for (i, p) in melody.packets.iter().enumerate() {
            lis.push(p);
            if i % 25 == 19 {
                heard.push(dominant_frequency(&lis.recent(200)).unwrap().0);
            }
        }
        let notes = [
            523.25, 659.26, 783.99, 659.26, 587.33, 698.46, 880.0, 783.99,
        ];
        for (hz, note) in heard.iter().zip(notes) {
            assert!((hz - note).abs() <= 10.0, "heard {heard:?}");
        }
        assert_eq!(lis.undecodable, 0);
    }

    #[test]
    fn a_tone_survives_opus_and_is_measured() {
        let mut enc = ToneEncoder::new(440.0).unwrap();
        let mut lis = Listener::new().unwrap();
        for _ in 0..50 {
            lis.push(&enc.next_frame().unwrap());
        }
        let (hz, rms) = dominant_frequency(&lis.recent(500)).unwrap();
        assert!((hz - 440.0).abs() <= 10.0, "heard {hz} Hz");
        assert!(rms > 0.05, "rms {rms}");
        lis.push(&crate::media::OPUS_SILENCE);
        let mut quiet = Listener::new().unwrap();
        for _ in 0..25 {
            quiet.push(&crate::media::OPUS_SILENCE);
        }
        assert_eq!(
            dominant_frequency(&quiet.recent(400)),
            None,
            "silence is silent"
        );
    }
}
