//! Test audio: tones encoded with libopus, and what a listener heard, decoded and measured.
//!
//! Opus is encoded and decoded only here, in simulated peers; switchboard's relay never does.

use std::collections::VecDeque;

/// Samples per 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
const RATE: f64 = 48_000.0;

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
    pub fn new(freq: f64) -> Result<ToneEncoder, opus::Error> {
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
    pub fn next_frame(&mut self) -> Result<Vec<u8>, opus::Error> {
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
    pub fn new() -> Result<Listener, opus::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
