//! Logs to stderr in a form journald reads well.
//!
//! Under systemd (JOURNAL_STREAM is set) each line starts with the syslog
//! priority `<N>`, which journald turns into the entry's priority, and carries
//! no timestamp (journald adds its own). Elsewhere lines get an RFC 3339 UTC
//! timestamp. Colour only on a terminal. `-v`/`-q` move the level up or down
//! from info.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The level for a number of `-v` and `-q` flags.
pub fn level_for(verbose: u8, quiet: u8) -> Level {
    match i16::from(verbose) - i16::from(quiet) {
        i16::MIN..=-2 => Level::ERROR,
        -1 => Level::WARN,
        0 => Level::INFO,
        1 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Installs the global subscriber; a second call is a no-op.
pub fn init(level: Level) {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let format = LineFormat {
        journald,
        ansi: !journald
            && std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none(),
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(format.ansi)
        .event_format(format)
        .try_init();
}

struct LineFormat {
    journald: bool,
    ansi: bool,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        if self.journald {
            write!(writer, "<{}>", syslog_priority(level))?;
        } else {
            write!(
                writer,
                "{} ",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            )?;
        }
        if self.ansi {
            write!(writer, "\x1b[{}m{:>5}\x1b[0m ", colour(level), level)?;
        } else {
            write!(writer, "{level:>5} ")?;
        }
        write!(writer, "{}: ", event.metadata().target())?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

fn colour(level: Level) -> u8 {
    match level {
        Level::ERROR => 31,
        Level::WARN => 33,
        Level::INFO => 32,
        Level::DEBUG => 34,
        Level::TRACE => 35,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_move_the_level() {
        assert_eq!(level_for(0, 0), Level::INFO);
        assert_eq!(level_for(1, 0), Level::DEBUG);
        assert_eq!(level_for(3, 0), Level::TRACE);
        assert_eq!(level_for(0, 1), Level::WARN);
        assert_eq!(level_for(0, 5), Level::ERROR);
    }
}
