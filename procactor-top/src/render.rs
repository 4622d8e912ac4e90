//! Views as text: the plain table of `--once`, and the ratatui frame of the live view.
//! Both are functions of the state they are given: no terminal is touched here (the
//! frame is drawn into whatever backend the caller has, a test's `TestBackend` too).

use crate::app::{App, SortBy};
use crate::model::{fmt_clock, fmt_count, fmt_kib, fmt_rate, Kind, Row, Totals, View};
use procactor::stats::duration_text;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row as TableRow, Table, TableState, Wrap};
use ratatui::Frame;

/// The table's columns.
pub const COLUMNS: [&str; 12] = [
    "NAME", "KIND", "PID", "STATE", "RESTARTS", "MAILBOX", "MSGS", "MSGS/S", "P99", "USS", "CPU%",
    "NOTE",
];

/// Columns aligned left (the others are numbers, aligned right).
const LEFT: [bool; 12] = [
    true, true, false, true, false, false, false, false, false, false, false, true,
];

/// The widest a name is shown (longer ones are cut with `…`).
const NAME_WIDTH: usize = 40;

fn or_dash<T>(x: Option<T>, f: impl FnOnce(T) -> String) -> String {
    x.map(f).unwrap_or_else(|| "-".to_string())
}

/// One line's cells, in [`COLUMNS`] order (the name indented two spaces per level).
pub fn cells(r: &Row) -> [String; 12] {
    let mut name = format!("{}{}", "  ".repeat(r.depth), r.name);
    if name.chars().count() > NAME_WIDTH {
        name = name.chars().take(NAME_WIDTH - 1).collect::<String>() + "…";
    }
    [
        name,
        r.kind.label().to_string(),
        or_dash(r.pid, |p| p.to_string()),
        r.state.clone(),
        or_dash(r.restarts, |x| x.to_string()),
        or_dash(r.mailbox, |x| x.to_string()),
        or_dash(r.count, fmt_count),
        or_dash(r.rate, fmt_rate),
        // a histogram that has counted nothing has no p99 to show
        or_dash(r.p99_ns.filter(|_| r.count != Some(0)), duration_text),
        or_dash(r.uss_kib, fmt_kib),
        or_dash(r.cpu_pct, |x| format!("{x:.1}")),
        r.note(),
    ]
}

/// The header: who is watched, when, and the totals (a third line when anything is
/// saturated or flapping).
pub fn header(t: &Totals) -> Vec<String> {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut lines = vec![
        format!(
            "procactor-top · pid {} ({}) · {}",
            t.pid,
            t.command,
            fmt_clock(t.taken_at_ms)
        ),
        format!(
            "{}, {}, {} ({}), {} · restarts {} · {} msgs/s · USS {} · CPU {}%",
            plural(t.supervisors, "supervisor", "supervisors"),
            plural(t.actors, "actor", "actors"),
            plural(t.pools, "Pool", "Pools"),
            plural(t.workers, "worker", "workers"),
            plural(t.queues, "queue", "queues"),
            t.restarts,
            or_dash(t.rate, fmt_rate),
            fmt_kib(t.uss_kib),
            or_dash(t.cpu_pct, |x| format!("{x:.1}")),
        ),
    ];
    if t.saturated + t.flapping > 0 {
        lines.push(format!(
            "{} saturated (mailbox growing), {} flapping (restarts rising)",
            t.saturated, t.flapping
        ));
    }
    lines
}

/// The plain text of `--once`: the header, then the table with aligned columns, no
/// terminal control codes. Rates and CPU% are `-` unless the view came from a second
/// snapshot.
pub fn text(view: &View, rows: &[Row]) -> String {
    let table: Vec<[String; 12]> = std::iter::once(COLUMNS.map(str::to_string))
        .chain(rows.iter().map(cells))
        .collect();
    let width = |c: usize| {
        table
            .iter()
            .map(|r| r[c].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..COLUMNS.len()).map(width).collect();
    let mut out = String::new();
    for l in header(&view.totals) {
        out.push_str(&l);
        out.push('\n');
    }
    out.push('\n');
    for r in &table {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let pad = widths[c] - cell.chars().count();
            if LEFT[c] {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The live view: header, table (the selected line highlighted, saturated lines
/// yellow, flapping ones red, lines not running grey), the selected line's details,
/// and the keys. Sets `app.page` to the lines the table shows at once.
pub fn draw(f: &mut Frame<'_>, app: &mut App) {
    let [head, table, detail, keys] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(2),
        Constraint::Length(1),
    ])
    .areas(f.area());

    let head_lines: Vec<Line<'_>> = match &app.view {
        Some(v) => header(&v.totals).into_iter().map(Line::from).collect(),
        None => vec![Line::from(
            "procactor-top · waiting for the first snapshot…",
        )],
    };
    f.render_widget(Paragraph::new(head_lines), head);

    let cells: Vec<[String; 12]> = app.rows.iter().map(cells).collect();
    let widths: Vec<Constraint> = (0..COLUMNS.len())
        .map(|c| {
            let w = cells
                .iter()
                .map(|r| r[c].chars().count())
                .chain([COLUMNS[c].chars().count() + 1]) // room for the sort mark
                .max()
                .unwrap_or(1);
            Constraint::Length(w as u16)
        })
        .collect();
    let sort_title = |c: usize| {
        let t = COLUMNS[c];
        if app.sort != SortBy::Tree && app.sort.label() == t {
            format!("{t}{}", if app.reverse { "▲" } else { "▼" })
        } else {
            t.to_string()
        }
    };
    let header_row = TableRow::new((0..COLUMNS.len()).map(sort_title))
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let body = app.rows.iter().zip(cells).map(|(r, c)| {
        let style = if r.flapping {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else if r.saturated {
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else if r.pid.is_none() && !matches!(r.kind, Kind::Pool | Kind::Queue) {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        };
        TableRow::new(c.into_iter().enumerate().map(|(i, s)| {
            if LEFT[i] {
                Line::from(s)
            } else {
                Line::from(s).right_aligned()
            }
        }))
        .style(style)
    });
    let t = Table::new(body, widths)
        .header(header_row)
        .column_spacing(2)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    app.page = (table.height as usize).saturating_sub(1).max(1);
    let mut state = TableState::default()
        .with_selected((!app.rows.is_empty()).then(|| app.selected.min(app.rows.len() - 1)));
    f.render_stateful_widget(t, table, &mut state);

    let d = app
        .selected_row()
        .map(|r| r.detail.clone())
        .unwrap_or_default();
    f.render_widget(
        Paragraph::new(d)
            .style(Style::new().fg(Color::Cyan))
            .wrap(Wrap { trim: true }),
        detail,
    );

    let sort = match app.sort {
        SortBy::Tree => "tree order".to_string(),
        s => format!("{}{}", s.label(), if app.reverse { " ▲" } else { " ▼" }),
    };
    let mut spans = vec![Span::raw(format!(
        "↑↓ move  PgUp/PgDn  s/S sort ({sort})  r reverse  q quit"
    ))];
    if let Some(e) = &app.error {
        spans.push(Span::styled(
            format!("  · refresh failed: {e}"),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), keys);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Key;
    use crate::model::tests::program;
    use crate::model::Tracker;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen(app: &mut App, w: u16, h: u16) -> (Vec<String>, ratatui::buffer::Buffer) {
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        term.draw(|f| draw(f, app)).unwrap();
        let buf = term.backend().buffer().clone();
        let lines = (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect())
            .collect();
        (lines, buf)
    }

    #[test]
    fn once_text_is_an_aligned_table_without_control_codes() {
        let mut t = Tracker::new();
        t.observe(&program(1, 2, 0));
        t.observe(&program(2, 4, 0));
        let v = t.observe(&program(3, 8, 1));
        let s = text(&v, &v.rows);
        assert!(!s.contains('\x1b'), "no escape codes: {s:?}");
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "procactor-top · pid 100 (observe) · 00:16:43 UTC");
        assert_eq!(
            lines[1],
            "2 supervisors, 5 actors, 1 Pool (2 workers), 1 queue · restarts 1 · 1300 msgs/s \
             · USS 21.8M · CPU 62.1%"
        );
        assert_eq!(
            lines[2],
            "1 saturated (mailbox growing), 2 flapping (restarts rising)"
        );
        let head = lines[4];
        assert!(head.starts_with("NAME  "), "{head}");
        let col = |name: &str| head.find(name).unwrap();
        let a = lines
            .iter()
            .find(|l| l.starts_with("  a "))
            .expect("a's line");
        // numbers end where their column's title ends
        let msgs_end = col("MSGS ") + "MSGS".len();
        assert_eq!(&a[msgs_end - 4..msgs_end], "3000");
        assert_eq!(&a[col("MSGS/S")..col("MSGS/S") + 6], "  1000");
        assert!(a.ends_with("saturated"), "{a}");
        let b = lines.iter().find(|l| l.starts_with("  b ")).unwrap();
        assert!(b.ends_with("flapping"), "{b}");
        let c = lines
            .iter()
            .find(|l| l.starts_with("    c "))
            .expect("c, two deep");
        assert!(c.contains("65.5µs"), "p99 shown: {c}");
        assert!(c.contains("2048K"), "USS shown: {c}");
        let jobs = lines.last().unwrap();
        assert!(
            jobs.starts_with("jobs ") && jobs.contains(" queue "),
            "{jobs}"
        );
        assert_eq!(lines.len(), 5 + 11);
    }

    #[test]
    fn the_live_view_shows_the_tree_the_sort_and_the_selection() {
        let mut app = App::new();
        let (lines, _) = screen(&mut app, 120, 10);
        assert!(
            lines[0].contains("waiting for the first snapshot"),
            "{lines:#?}"
        );
        app.update(Ok(program(1, 0, 0)));
        app.update(Ok(program(2, 0, 0)));
        app.key(Key::Down);
        let (lines, buf) = screen(&mut app, 140, 24);
        let all = lines.join("\n");
        assert!(
            lines[0].starts_with("procactor-top · pid 100 (observe)"),
            "{all}"
        );
        for name in ["root", "  a ", "  w[1]", "    c ", "pool-1[1]", "jobs"] {
            assert!(all.contains(name), "{name} in\n{all}");
        }
        let title = lines.iter().position(|l| l.starts_with("NAME")).unwrap();
        let a = title + 2;
        assert!(lines[a].starts_with("  a "), "{all}");
        assert!(lines[a].contains("2000"), "a's count: {}", lines[a]);
        assert!(lines[a].contains("1000"), "a's rate: {}", lines[a]);
        // the selected line is drawn reversed, the others not
        assert!(buf[(2, a as u16)].modifier.contains(Modifier::REVERSED));
        assert!(!buf[(2, a as u16 + 1)].modifier.contains(Modifier::REVERSED));
        assert!(
            all.contains("actor a · handled 2000 (calls 1000, errors 0)"),
            "{all}"
        );
        assert!(all.contains("s/S sort (tree order)"), "{all}");
        assert_eq!(app.page, 24 - 3 - 2 - 1 - 1);

        app.key(Key::Char('S')); // back from tree to CPU%
        let (lines, _) = screen(&mut app, 140, 24);
        assert!(lines[title].contains("CPU%▼"), "{}", lines[title]);
        assert!(lines.last().unwrap().contains("sort (CPU% ▼)"));

        app.update(Err("the program is gone".to_string()));
        let (lines, _) = screen(&mut app, 140, 24);
        assert!(lines
            .last()
            .unwrap()
            .contains("refresh failed: the program is gone"));
        assert!(
            lines.join("\n").contains("pool-1[1]"),
            "the last view stays"
        );
    }

    #[test]
    fn flapping_and_saturated_lines_are_coloured() {
        let mut app = App::new();
        app.update(Ok(program(1, 1, 0)));
        app.update(Ok(program(2, 2, 0)));
        app.update(Ok(program(3, 3, 1)));
        let (lines, buf) = screen(&mut app, 140, 24);
        let at = |name: &str| lines.iter().position(|l| l.starts_with(name)).unwrap() as u16;
        assert_eq!(buf[(2, at("  a "))].fg, Color::Yellow);
        assert_eq!(buf[(2, at("  b "))].fg, Color::Red);
        assert_eq!(buf[(4, at("    c "))].fg, Color::Reset);
    }
}
