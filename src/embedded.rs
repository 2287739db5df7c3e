//! Data compiled into the binary (`include_bytes!`), read through the
//! executable file rather than through memory.
//!
//! Why: every page of the binary the process touches stays in its resident
//! set (and the kernel maps up to 64 KiB around each fault). Classification
//! carries ~700 KB of tables and registries of which a sweep needs a few
//! blocks: read through memory they would add hundreds of KiB to a gateway's
//! RSS for good; read with `pread` from `/proc/self/exe` they cost a
//! transient buffer and some page cache, which the kernel can reclaim.
//!
//! Where the executable cannot be read (no `/proc`, an odd mapping), the
//! bytes are read from memory as usual: slower on RSS, never wrong. The
//! offset arithmetic is checked once, on a probe compiled in for the
//! purpose, so that no read has to touch the memory it avoids.

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::OnceLock;

/// The executable, open for the process's life, and where its mappings are.
struct Executable {
    file: File,
    /// (start, end, file offset) of each mapping of the executable.
    mappings: Vec<(usize, usize, u64)>,
}

fn executable() -> Option<&'static Executable> {
    static EXE: OnceLock<Option<Executable>> = OnceLock::new();
    EXE.get_or_init(|| {
        let path = std::fs::read_link("/proc/self/exe").ok()?;
        let file = File::open("/proc/self/exe").ok()?;
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        let shown = path.to_string_lossy();
        // A replaced binary shows as "<path> (deleted)": still ours.
        let mappings = maps
            .lines()
            .filter(|line| line.ends_with(&*shown) || line.contains(&format!("{shown} (deleted)")))
            .filter_map(mapping)
            .collect();
        let exe = Executable { file, mappings };
        // Check the arithmetic once, on a probe compiled in beside the data:
        // then no read needs to touch memory to check itself.
        let probe = std::hint::black_box(&PROBE);
        (pread(&exe, probe, 0, probe.len())? == probe[..]).then_some(exe)
    })
    .as_ref()
}

/// Read once through the file and once through memory, to check that
/// [`file_offset`] finds compiled-in data where it is.
static PROBE: [u8; 16] = *b"cpe-agent/probe\n";

/// "start-end perms offset ..." → (start, end, offset).
fn mapping(line: &str) -> Option<(usize, usize, u64)> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let _perms = fields.next()?;
    let offset = fields.next()?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
        u64::from_str_radix(offset, 16).ok()?,
    ))
}

/// Where `bytes` (inside the binary) lie in the executable file.
fn file_offset(exe: &Executable, bytes: &[u8]) -> Option<u64> {
    let address = bytes.as_ptr() as usize;
    let end = address.checked_add(bytes.len())?;
    exe.mappings
        .iter()
        .find(|(start, stop, _)| *start <= address && end <= *stop)
        .map(|(start, _, offset)| offset + (address - start) as u64)
}

/// `len` bytes at `at` of the compiled-in `bytes`, read from the executable
/// file when it can be, else from memory. `None` when out of range.
pub fn read(bytes: &'static [u8], at: usize, len: usize) -> Option<Cow<'static, [u8]>> {
    let end = at.checked_add(len)?;
    if end > bytes.len() {
        return None;
    }
    if let Some(read) = read_from_file(bytes, at, len) {
        return Some(Cow::Owned(read));
    }
    bytes.get(at..end).map(Cow::Borrowed)
}

/// The whole of a compiled-in text, read from the executable file when it
/// can be: for data parsed once, whose pages would otherwise stay resident.
pub fn text(text: &'static str) -> Cow<'static, str> {
    match read_from_file(text.as_bytes(), 0, text.len()).map(String::from_utf8) {
        Some(Ok(read)) => Cow::Owned(read),
        _ => Cow::Borrowed(text),
    }
}

fn read_from_file(bytes: &'static [u8], at: usize, len: usize) -> Option<Vec<u8>> {
    pread(executable()?, bytes, at, len)
}

fn pread(exe: &Executable, bytes: &[u8], at: usize, len: usize) -> Option<Vec<u8>> {
    let base = file_offset(exe, bytes)?;
    let mut buffer = vec![0u8; len];
    exe.file.read_exact_at(&mut buffer, base + at as u64).ok()?;
    Some(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    static DATA: &[u8] = b"compiled-in bytes, read back through /proc/self/exe";

    #[test]
    fn compiled_in_bytes_read_back_through_the_executable() {
        let read = read(DATA, 12, 5).expect("in range");
        assert_eq!(&*read, b"bytes");
        assert!(
            matches!(read, Cow::Owned(_)),
            "read through memory: /proc/self/exe or its mappings were not found"
        );
        assert_eq!(&*text("a compiled-in text"), "a compiled-in text");
        assert!(super::read(DATA, DATA.len(), 1).is_none());
        assert!(super::read(DATA, usize::MAX, 2).is_none());
    }
}
