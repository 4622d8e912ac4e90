//! `procactor-top <pid>`: the terminal side (see the library's docs for what is shown).
//! Everything here is plumbing: arguments, one thread that asks its [`Source`] for a
//! snapshot every interval, and the loop that passes keys and snapshots to the [`App`]
//! and draws it.

use procactor_top::app::{App, Key};
use procactor_top::{
    json_text, once_text, parse_args, render, Mode, ParseError, Source, FETCH_TIMEOUT, USAGE,
};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(ParseError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ParseError::Bad(why)) => {
            eprintln!("procactor-top: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let out = match args.mode {
        Mode::Json => json_text(args.pid),
        Mode::Once => once_text(args.pid, args.interval),
        Mode::Live => live(args.pid, args.interval).map(|()| String::new()),
    };
    match out {
        Ok(s) => {
            print!("{s}");
            if args.mode == Mode::Json {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("procactor-top: {e}");
            ExitCode::from(1)
        }
    }
}

/// The live view until a quit key. The first snapshot is asked for before the terminal
/// is taken over, so that a wrong pid is a message and exit status 1, not a blank screen.
fn live(pid: u32, interval: Duration) -> Result<(), String> {
    // one source (one connection) for the first snapshot and every refresh
    let mut src = Source::new(pid);
    let first = src.snapshot(FETCH_TIMEOUT)?;
    let (tx, rx) = mpsc::channel();
    // ends at its next send once the view is gone (or with the process)
    std::thread::Builder::new()
        .name("procactor-top-fetch".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            if tx.send(src.snapshot(FETCH_TIMEOUT)).is_err() {
                return;
            }
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    let mut app = App::new();
    app.update(Ok(first));
    let mut term = ratatui::try_init().map_err(|e| format!("cannot use the terminal: {e}"))?;
    let r = run(&mut term, &mut app, &rx);
    ratatui::restore();
    r.map_err(|e| format!("terminal: {e}"))
}

fn run(
    term: &mut DefaultTerminal,
    app: &mut App,
    rx: &mpsc::Receiver<Result<procactor::stats::ProgramSnapshot, String>>,
) -> std::io::Result<()> {
    let mut dirty = true;
    loop {
        if dirty {
            term.draw(|f| render::draw(f, app))?;
            dirty = false;
        }
        if event::poll(Duration::from_millis(50))? {
            match event::read()? {
                Event::Key(k) if k.kind != KeyEventKind::Release => {
                    if let Some(key) = key_of(k) {
                        app.key(key);
                        dirty = true;
                    }
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
        while let Ok(r) = rx.try_recv() {
            app.update(r);
            dirty = true;
        }
        if app.quit {
            return Ok(());
        }
    }
}

fn key_of(k: KeyEvent) -> Option<Key> {
    Some(match k.code {
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Interrupt,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Esc => Key::Esc,
        KeyCode::Char(c) => Key::Char(c),
        _ => return None,
    })
}
