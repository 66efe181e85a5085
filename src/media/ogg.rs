//! Ogg/Opus files (RFC 7845) read once into the Opus packets they carry, ready to go out one per
//! RTP packet every 20 ms: the simulated caller's voice today, hold audio later.
//!
//! Pure: bytes in, packets out; no file I/O, no decoding (libopus is never needed here). The
//! file's bytes may come from anyone, so every check is a typed [`OggError`] and nothing panics.
//!
//! Opus itself always runs at 48 kHz on the wire (RFC 7587: `opus/48000/2`, whatever the
//! audio's original rate, which `OpusHead` records only for information). What cannot go into
//! such a stream untouched is refused: streams that are not Opus, multistream Opus (channel
//! mapping family other than 0, or more than two channels), several logical streams, and any
//! packet that is not exactly one 20 ms frame time (960 samples at 48 kHz), since the packets
//! are sent as they are at a fixed 20 ms pace.

use std::io::Cursor;

use ogg::reading::{OggReadError, PacketReader};

/// Samples per packet at 48 kHz: 20 ms, WhatsApp's `a=ptime:20`.
pub const FRAME_SAMPLES: u32 = 960;

/// What an Ogg/Opus file held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggOpus {
    /// 1 (mono) or 2 (stereo).
    pub channels: u8,
    /// Samples (at 48 kHz) the decoder should drop at the start (`OpusHead`'s pre-skip).
    pub pre_skip: u16,
    /// The audio packets in order, each one 20 ms of Opus.
    pub packets: Vec<Vec<u8>>,
}

/// Why bytes are not a usable Ogg/Opus file. All of them are the file's fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OggError {
    /// No Ogg page was found at all.
    #[error("not an Ogg file (no Ogg page found)")]
    NotOgg,
    /// The Ogg container is corrupt (bad checksum, bad page structure, cut mid-page).
    #[error("corrupt Ogg stream: {0}")]
    Container(#[from] OggReadError),
    /// The stream ends without Ogg's end-of-stream mark: the file was cut short.
    #[error("the Ogg stream is truncated (no end-of-stream page)")]
    Truncated,
    /// The file holds more than one logical stream (chained or multiplexed).
    #[error("more than one logical Ogg stream; only a single Opus stream is played")]
    MultipleStreams,
    /// The first packet is not an `OpusHead`: another codec (Vorbis, Speex, FLAC…).
    #[error("the Ogg stream is not Opus (its first packet is not OpusHead)")]
    NotOpus,
    /// `OpusHead` is shorter than its 19 bytes.
    #[error("OpusHead is {len} bytes; it has at least 19")]
    ShortHeader {
        /// Its length.
        len: usize,
    },
    /// An `OpusHead` version this reader does not understand (major version not 0).
    #[error("OpusHead version {version} is not supported")]
    UnsupportedVersion {
        /// The version byte.
        version: u8,
    },
    /// Not one plain mono or stereo Opus stream.
    #[error(
        "{channels} channels with channel mapping family {mapping_family}: only mono or stereo \
         (family 0) Opus can be sent as it is"
    )]
    UnsupportedChannels {
        /// The channel count.
        channels: u8,
        /// The channel mapping family.
        mapping_family: u8,
    },
    /// The second packet is not `OpusTags`.
    #[error("the second packet is not OpusTags")]
    MissingTags,
    /// Headers but no audio.
    #[error("the file has no audio packets")]
    NoAudio,
    /// An audio packet that is not a well-formed Opus packet.
    #[error("audio packet {index} is not a valid Opus packet")]
    BadPacket {
        /// 0-based index among the audio packets.
        index: usize,
    },
    /// An audio packet of another duration than 20 ms.
    #[error(
        "audio packet {index} lasts {samples} samples at 48 kHz, not 960 (20 ms); encode with \
         20 ms frames (opusenc --framesize 20)"
    )]
    FrameDuration {
        /// 0-based index among the audio packets.
        index: usize,
        /// Its duration in 48 kHz samples.
        samples: u32,
    },
}

/// The built-in clip: a soft 4 s melody (mono, 20 ms Opus frames), the default hold audio and
/// the sandbox caller's voice. How it was made is in `crate::sim::audio`.
pub const MELODY: &[u8] = include_bytes!("melody.opus");

/// An Ogg/Opus file (mono, one logical stream) of `packets`, each 20 ms of Opus: what [`read`]
/// reads back. For hold audio and clips made by tools and tests; nothing on a call writes Ogg.
pub fn write(packets: &[Vec<u8>]) -> Vec<u8> {
    use ogg::writing::{PacketWriteEndInfo, PacketWriter};
    const SERIAL: u32 = 1;
    let mut head = b"OpusHead".to_vec();
    // Version 1, mono, no pre-skip, 48 kHz, no gain, channel mapping family 0.
    head.extend([1, 1, 0, 0]);
    head.extend(48_000u32.to_le_bytes());
    head.extend([0, 0, 0]);
    let tags = b"OpusTags\x0b\0\0\0switchboard\0\0\0\0".to_vec();
    let mut w = PacketWriter::new(Cursor::new(Vec::new()));
    // Writing to memory cannot fail.
    let _ = w.write_packet(head, SERIAL, PacketWriteEndInfo::EndPage, 0);
    let _ = w.write_packet(tags, SERIAL, PacketWriteEndInfo::EndPage, 0);
    for (i, p) in packets.iter().enumerate() {
        let end = if i + 1 == packets.len() {
            PacketWriteEndInfo::EndStream
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        let granule = u64::from(FRAME_SAMPLES) * (i as u64 + 1);
        let _ = w.write_packet(p.clone(), SERIAL, end, granule);
    }
    w.into_inner().into_inner()
}

/// Reads a whole Ogg/Opus file into its audio packets, checking `OpusHead`, `OpusTags` and that
/// every packet is 20 ms of mono or stereo Opus.
pub fn read(bytes: &[u8]) -> Result<OggOpus, OggError> {
    let mut reader = PacketReader::new(Cursor::new(bytes));
    let head = match reader.read_packet() {
        Ok(Some(p)) => p,
        Ok(None) | Err(OggReadError::NoCapturePatternFound) => return Err(OggError::NotOgg),
        Err(e) => return Err(e.into()),
    };
    let serial = head.stream_serial();
    let (channels, pre_skip) = opus_head(&head.data)?;
    let mut packets = Vec::new();
    let mut tags_seen = false;
    let mut ended = head.last_in_stream();
    while !ended {
        let Some(p) = reader.read_packet()? else {
            return Err(OggError::Truncated);
        };
        if p.stream_serial() != serial {
            return Err(OggError::MultipleStreams);
        }
        ended = p.last_in_stream();
        if !tags_seen {
            if !p.data.starts_with(b"OpusTags") {
                return Err(OggError::MissingTags);
            }
            tags_seen = true;
            continue;
        }
        let index = packets.len();
        match samples_48k(&p.data) {
            None => return Err(OggError::BadPacket { index }),
            Some(FRAME_SAMPLES) => packets.push(p.data),
            Some(samples) => return Err(OggError::FrameDuration { index, samples }),
        }
    }
    if !tags_seen {
        return Err(OggError::MissingTags);
    }
    // After the end of the stream: trailing junk is ignored (as players do), but another stream
    // chained after it is refused.
    if reader.read_packet()?.is_some() {
        return Err(OggError::MultipleStreams);
    }
    if packets.is_empty() {
        return Err(OggError::NoAudio);
    }
    Ok(OggOpus {
        channels,
        pre_skip,
        packets,
    })
}

/// `OpusHead` (RFC 7845 §5.1) → (channels, pre-skip).
fn opus_head(p: &[u8]) -> Result<(u8, u16), OggError> {
    if !p.starts_with(b"OpusHead") {
        return Err(OggError::NotOpus);
    }
    let [_, _, _, _, _, _, _, _, version, channels, s0, s1, _, _, _, _, _, _, mapping_family, ..] =
        *p
    else {
        return Err(OggError::ShortHeader { len: p.len() });
    };
    if version >> 4 != 0 {
        return Err(OggError::UnsupportedVersion { version });
    }
    if mapping_family != 0 || !(1..=2).contains(&channels) {
        return Err(OggError::UnsupportedChannels {
            channels,
            mapping_family,
        });
    }
    Ok((channels, u16::from_le_bytes([s0, s1])))
}

/// An Opus packet's duration in 48 kHz samples, from its TOC byte (RFC 6716 §3.1, §3.2);
/// `None` if it is not a well-formed packet.
fn samples_48k(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = usize::from(toc >> 3);
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][config % 4], // SILK: 10, 20, 40, 60 ms
        12..=15 => [480, 960][config % 2],            // hybrid: 10, 20 ms
        _ => [120, 240, 480, 960][config % 4],        // CELT: 2.5, 5, 10, 20 ms
    };
    let frames = match toc & 3 {
        0 => 1,
        1 => {
            // Two frames of equal size.
            if !(packet.len() - 1).is_multiple_of(2) {
                return None;
            }
            2
        }
        2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3F),
    };
    let samples = frame * frames;
    // At most 120 ms per packet.
    (frames > 0 && samples <= 5760).then_some(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ogg::writing::{PacketWriteEndInfo, PacketWriter};

    fn head(channels: u8, mapping_family: u8) -> Vec<u8> {
        let mut h = b"OpusHead".to_vec();
        h.extend([1, channels, 0x38, 0x01]); // version 1, pre-skip 312
        h.extend(48_000u32.to_le_bytes());
        h.extend([0, 0, mapping_family]);
        h
    }

    /// An Ogg file of `packets` on one stream, the last marked end-of-stream.
    fn ogg_file(packets: &[Vec<u8>]) -> Vec<u8> {
        ogg_stream(packets, 7)
    }

    fn ogg_stream(packets: &[Vec<u8>], serial: u32) -> Vec<u8> {
        let mut w = PacketWriter::new(Cursor::new(Vec::new()));
        for (i, p) in packets.iter().enumerate() {
            let end = if i + 1 == packets.len() {
                PacketWriteEndInfo::EndStream
            } else if i < 2 {
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            w.write_packet(p.clone(), serial, end, 960 * i as u64)
                .unwrap();
        }
        w.into_inner().into_inner()
    }

    /// 20 ms CELT packets (TOC 0xF8: config 31, one frame), numbered.
    fn audio(n: u8) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![0xF8, i, 0x55, 0xAA]).collect()
    }

    fn with_headers(head: Vec<u8>, audio: Vec<Vec<u8>>) -> Vec<u8> {
        let mut all = vec![head, b"OpusTags\0\0\0\0\0\0\0\0".to_vec()];
        all.extend(audio);
        ogg_file(&all)
    }

    #[test]
    fn what_write_writes_reads_back() {
        let melody = read(MELODY).unwrap().packets;
        let back = read(&write(&melody)).unwrap();
        assert_eq!((back.channels, back.pre_skip), (1, 0));
        assert_eq!(back.packets, melody);
    }

    #[test]
    fn the_built_in_melody_is_four_seconds_of_20_ms_mono_packets() {
        let o = read(MELODY).unwrap();
        assert_eq!(o.channels, 1);
        assert_eq!(o.pre_skip, 312);
        assert_eq!(
            o.packets.len(),
            201,
            "4 s and the encoder's 312 samples of pre-skip"
        );
        assert!(o.packets.iter().all(|p| samples_48k(p) == Some(960)));
    }

    #[test]
    fn packets_round_trip_through_an_ogg_file() {
        let packets = audio(120);
        let o = read(&with_headers(head(2, 0), packets.clone())).unwrap();
        assert_eq!(
            o,
            OggOpus {
                channels: 2,
                pre_skip: 312,
                packets
            }
        );
    }

    #[test]
    fn what_is_not_plain_20_ms_opus_is_refused() {
        let refused = |bytes: &[u8]| read(bytes).unwrap_err();
        assert!(matches!(refused(b""), OggError::NotOgg));
        assert!(matches!(refused(b"RIFF....WAVEfmt "), OggError::NotOgg));
        let vorbis = ogg_file(&[b"\x01vorbis\0\0\0\0".to_vec(), vec![1, 2, 3]]);
        assert!(matches!(refused(&vorbis), OggError::NotOpus));
        assert!(matches!(
            refused(&with_headers(head(6, 1), audio(3))),
            OggError::UnsupportedChannels {
                channels: 6,
                mapping_family: 1
            }
        ));
        assert!(matches!(
            refused(&with_headers(head(3, 0), audio(3))),
            OggError::UnsupportedChannels { channels: 3, .. }
        ));
        let mut v2 = head(1, 0);
        v2[8] = 0x10;
        assert!(matches!(
            refused(&with_headers(v2, audio(3))),
            OggError::UnsupportedVersion { version: 16 }
        ));
        assert!(matches!(
            refused(&ogg_file(&[b"OpusHead\x01\x01".to_vec(), vec![0]])),
            OggError::ShortHeader { len: 10 }
        ));
        assert!(matches!(
            refused(&ogg_file(&[head(1, 0), vec![0xF8, 1]])),
            OggError::MissingTags
        ));
        assert!(matches!(
            refused(&with_headers(head(1, 0), vec![])),
            OggError::NoAudio
        ));
        // 60 ms SILK (config 3), and 40 ms as two 20 ms CELT frames (code 1).
        let mut long = audio(3);
        long[1] = vec![0x18, 0];
        assert!(matches!(
            refused(&with_headers(head(1, 0), long)),
            OggError::FrameDuration {
                index: 1,
                samples: 2880
            }
        ));
        let two_frames = vec![audio(1)[0].clone(), vec![0xF9, 1, 2]];
        assert!(matches!(
            refused(&with_headers(head(1, 0), two_frames)),
            OggError::FrameDuration {
                index: 1,
                samples: 1920
            }
        ));
        let empty = vec![audio(1)[0].clone(), vec![]];
        assert!(matches!(
            refused(&with_headers(head(1, 0), empty)),
            OggError::BadPacket { index: 1 }
        ));
        let mut chained = with_headers(head(1, 0), audio(2));
        let mut second = vec![head(1, 0), b"OpusTags".to_vec()];
        second.extend(audio(2));
        chained.extend(ogg_stream(&second, 8));
        assert!(matches!(refused(&chained), OggError::MultipleStreams));
        // Two streams multiplexed page by page.
        let mut w = PacketWriter::new(Cursor::new(Vec::new()));
        for serial in [7, 8] {
            w.write_packet(head(1, 0), serial, PacketWriteEndInfo::EndPage, 0)
                .unwrap();
        }
        for serial in [7, 8] {
            w.write_packet(
                b"OpusTags".to_vec(),
                serial,
                PacketWriteEndInfo::EndStream,
                0,
            )
            .unwrap();
        }
        let multiplexed = w.into_inner().into_inner();
        assert!(matches!(refused(&multiplexed), OggError::MultipleStreams));
    }

    #[test]
    fn truncated_or_damaged_files_are_errors_never_panics() {
        for cut in [MELODY.len() - 1, MELODY.len() / 2, 200, 60, 27, 5] {
            assert!(read(&MELODY[..cut]).is_err(), "cut at {cut}");
        }
        // Cut exactly at a page boundary: no end-of-stream page.
        let last_page = MELODY
            .windows(4)
            .rposition(|w| w == b"OggS")
            .expect("pages");
        assert!(matches!(
            read(&MELODY[..last_page]),
            Err(OggError::Truncated)
        ));
        let mut flipped = MELODY.to_vec();
        flipped[MELODY.len() / 2] ^= 0x40;
        assert!(matches!(read(&flipped), Err(OggError::Container(_))));
        // Deterministic mutations all over the file: any result, but no panic.
        let mut x: u32 = 0x9E37_79B9;
        for _ in 0..3000 {
            let mut m = MELODY.to_vec();
            for _ in 0..1 + (x % 4) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let at = x as usize % m.len();
                m[at] = (x >> 8) as u8;
            }
            let _ = read(&m);
            let _ = read(&m[..x as usize % m.len()]);
        }
        // Well-formed Ogg (valid checksums) around random headers and packets.
        for _ in 0..500 {
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            };
            let mut h = head(1 + (next() % 3) as u8, (next() % 2) as u8);
            h.truncate(8 + next() as usize % 14);
            let mut packets = vec![h, b"OpusTags".to_vec()];
            for _ in 0..next() % 6 {
                packets.push((0..next() % 5).map(|_| next() as u8).collect());
            }
            let _ = read(&ogg_file(&packets));
        }
        for junk in [&b"OggS"[..], b"OggS\0\0\0\0", &[0xFF; 300], b"OpusHead"] {
            assert!(read(junk).is_err());
        }
    }
}
