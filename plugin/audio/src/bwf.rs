//! Broadcast WAV metadata carried from a WAV input to its output: the `bext` chunk
//! (description, originator, time reference, coding history), `iXML` (a field recorder's
//! scene, take and track names) and `axml`, byte for byte, placed before the output's `data`
//! chunk as BWF readers expect. The output has the input's rate and length, so the time
//! reference still holds.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The chunks kept.
const KEPT: [&[u8; 4]; 3] = [b"bext", b"iXML", b"axml"];
/// A kept chunk larger than this is taken for a corrupt size and not kept.
const LARGEST: u32 = 16 << 20;

/// One RIFF chunk: its id and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub id: [u8; 4],
    pub body: Vec<u8>,
}

/// Walks a RIFF/WAVE file's chunks: (id, size, offset of the body) each.
fn chunks(file: &mut (impl Read + Seek)) -> Result<Vec<([u8; 4], u32, u64)>> {
    let mut header = [0u8; 12];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut header)?;
    if &header[..4] != b"RIFF" || &header[8..] != b"WAVE" {
        return Ok(vec![]);
    }
    let len = file.seek(SeekFrom::End(0))?;
    let mut at = 12u64;
    let mut out = vec![];
    while at + 8 <= len {
        file.seek(SeekFrom::Start(at))?;
        let mut h = [0u8; 8];
        file.read_exact(&mut h)?;
        let id = [h[0], h[1], h[2], h[3]];
        let size = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        out.push((id, size, at + 8));
        at += 8 + size as u64 + (size & 1) as u64;
    }
    Ok(out)
}

/// The kept chunks of a WAV file (none for any other file).
pub fn read_kept(path: &Path) -> Result<Vec<Chunk>> {
    let mut file = BufReader::new(File::open(path)?);
    let mut kept = vec![];
    for (id, size, body) in chunks(&mut file)? {
        if KEPT.contains(&&id) && size <= LARGEST {
            let mut data = vec![0u8; size as usize];
            file.seek(SeekFrom::Start(body))?;
            if file.read_exact(&mut data).is_ok() {
                kept.push(Chunk { id, body: data });
            }
        }
    }
    Ok(kept)
}

/// Rewrites the WAV file at `path` with `kept` placed just before its `data` chunk.
pub fn insert_before_data(path: &Path, kept: &[Chunk]) -> Result<()> {
    if kept.is_empty() {
        return Ok(());
    }
    let mut file = File::open(path)?;
    let Some(&(_, _, body)) = chunks(&mut file)?.iter().find(|(id, _, _)| id == b"data") else {
        bail!(
            "{}: no data chunk to put the metadata before",
            path.display()
        );
    };
    let data_at = body - 8;
    let total = file.seek(SeekFrom::End(0))?;
    let added: u64 = kept
        .iter()
        .map(|c| 8 + c.body.len() as u64 + (c.body.len() & 1) as u64)
        .sum();
    let riff_size = u32::try_from(total + added - 8)
        .context("the output with its metadata would pass the 4 GB a WAV file can hold")?;
    let tmp = path.with_extension("bwf");
    let mut out = BufWriter::new(File::create(&tmp)?);
    file.seek(SeekFrom::Start(0))?;
    let mut head = vec![0u8; data_at as usize];
    file.read_exact(&mut head)?;
    head[4..8].copy_from_slice(&riff_size.to_le_bytes());
    out.write_all(&head)?;
    for c in kept {
        out.write_all(&c.id)?;
        out.write_all(&(c.body.len() as u32).to_le_bytes())?;
        out.write_all(&c.body)?;
        if c.body.len() % 2 == 1 {
            out.write_all(&[0])?;
        }
    }
    std::io::copy(&mut file, &mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
