//! The interactive view's state: the latest view, the sort order, the selected line, and
//! what each key does. No terminal here: keys come in as [`Key`], snapshots as results.

use crate::model::{Row, Tracker, View};
use procactor::stats::ProgramSnapshot;
use std::cmp::Ordering;
use std::collections::HashMap;

/// The column the lines are sorted by. Sorting keeps the tree: the children of each
/// supervisor (and the workers of each Pool) are ordered among themselves, and the three
/// sections (supervisors, Pools, queues) stay in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// The order of the program: start order of children.
    #[default]
    Tree,
    /// Name, A to Z.
    Name,
    /// Pid, lowest first; lines without one (not running, a Pool, a queue) last.
    Pid,
    /// Restarts, most first.
    Restarts,
    /// Mailbox depth, deepest first.
    Mailbox,
    /// Messages handled so far, most first.
    Msgs,
    /// Messages per second, busiest first.
    Rate,
    /// p99 of the handle time, slowest first.
    P99,
    /// USS, largest first.
    Uss,
    /// CPU%, busiest first.
    Cpu,
}

impl SortBy {
    /// Every order, in the order `s` cycles through them.
    pub const ALL: [SortBy; 10] = [
        SortBy::Tree,
        SortBy::Name,
        SortBy::Pid,
        SortBy::Restarts,
        SortBy::Mailbox,
        SortBy::Msgs,
        SortBy::Rate,
        SortBy::P99,
        SortBy::Uss,
        SortBy::Cpu,
    ];

    /// The next order (`s`).
    pub fn next(self) -> SortBy {
        let i = SortBy::ALL.iter().position(|s| *s == self).unwrap_or(0);
        SortBy::ALL[(i + 1) % SortBy::ALL.len()]
    }

    /// The previous order (`S`).
    pub fn prev(self) -> SortBy {
        let i = SortBy::ALL.iter().position(|s| *s == self).unwrap_or(0);
        SortBy::ALL[(i + SortBy::ALL.len() - 1) % SortBy::ALL.len()]
    }

    /// How the header names it (the column's title, or `tree`).
    pub fn label(self) -> &'static str {
        match self {
            SortBy::Tree => "tree",
            SortBy::Name => "NAME",
            SortBy::Pid => "PID",
            SortBy::Restarts => "RESTARTS",
            SortBy::Mailbox => "MAILBOX",
            SortBy::Msgs => "MSGS",
            SortBy::Rate => "MSGS/S",
            SortBy::P99 => "P99",
            SortBy::Uss => "USS",
            SortBy::Cpu => "CPU%",
        }
    }

    fn cmp(self, a: &Row, b: &Row) -> Ordering {
        // numbers: largest first, unknown last
        fn desc<T: PartialOrd>(a: Option<T>, b: Option<T>) -> Ordering {
            match (a, b) {
                (Some(a), Some(b)) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        }
        // lowest first, unknown last
        fn asc<T: Ord>(a: Option<T>, b: Option<T>) -> Ordering {
            match (a, b) {
                (Some(a), Some(b)) => a.cmp(&b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        }
        match self {
            SortBy::Tree => Ordering::Equal,
            SortBy::Name => a.name.cmp(&b.name),
            SortBy::Pid => asc(a.pid, b.pid),
            SortBy::Restarts => desc(a.restarts, b.restarts),
            SortBy::Mailbox => desc(a.mailbox, b.mailbox),
            SortBy::Msgs => desc(a.count, b.count),
            SortBy::Rate => desc(a.rate, b.rate),
            SortBy::P99 => desc(a.p99_ns, b.p99_ns),
            SortBy::Uss => desc(a.uss_kib, b.uss_kib),
            SortBy::Cpu => desc(a.cpu_pct, b.cpu_pct),
        }
    }
}

/// `rows` (in tree order, as [`View::rows`]) sorted by `by` among siblings, `reverse`
/// turning the column's order around. Ties keep the tree order.
pub fn sorted(rows: &[Row], by: SortBy, reverse: bool) -> Vec<Row> {
    let mut kids: HashMap<Option<&str>, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        kids.entry(r.parent.as_deref()).or_default().push(i);
    }
    let order = |a: &usize, b: &usize| {
        let (ra, rb) = (&rows[*a], &rows[*b]);
        let col = by.cmp(ra, rb);
        let col = if reverse { col.reverse() } else { col };
        ra.section.cmp(&rb.section).then(col).then(a.cmp(b))
    };
    for v in kids.values_mut() {
        v.sort_by(order);
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut stack: Vec<usize> = kids.get(&None).cloned().unwrap_or_default();
    stack.reverse();
    while let Some(i) = stack.pop() {
        out.push(rows[i].clone());
        if let Some(k) = kids.get(&Some(rows[i].key.as_str())) {
            stack.extend(k.iter().rev());
        }
    }
    out
}

/// A key press, as the view understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// ↑ (or `k`).
    Up,
    /// ↓ (or `j`).
    Down,
    /// Page Up.
    PageUp,
    /// Page Down.
    PageDown,
    /// Home.
    Home,
    /// End.
    End,
    /// Esc.
    Esc,
    /// Ctrl-C.
    Interrupt,
    /// Any other character.
    Char(char),
}

/// The interactive view's state.
#[derive(Debug, Default)]
pub struct App {
    tracker: Tracker,
    /// The latest view (`None` before the first snapshot).
    pub view: Option<View>,
    /// Its lines in the current order.
    pub rows: Vec<Row>,
    /// The sort column.
    pub sort: SortBy,
    /// The sort column's order turned around (`r`).
    pub reverse: bool,
    /// The selected line's index in `rows`.
    pub selected: usize,
    selected_key: Option<String>,
    /// Why the last refresh failed (the view shows the one before).
    pub error: Option<String>,
    /// Lines the table shows at once (for Page Up/Down; set by the drawing).
    pub page: usize,
    /// `q`, Esc or Ctrl-C was pressed.
    pub quit: bool,
}

impl App {
    /// A view that has seen no snapshot yet.
    pub fn new() -> App {
        App {
            page: 10,
            ..App::default()
        }
    }

    /// A refresh: a new snapshot, or why there is none (the last view stays, with the
    /// error shown).
    pub fn update(&mut self, snap: Result<ProgramSnapshot, String>) {
        match snap {
            Ok(s) => {
                self.view = Some(self.tracker.observe(&s));
                self.error = None;
                self.resort();
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// What a key does: ↑/↓ (`k`/`j`), Page Up/Down, Home/End move the selection, `s`/`S`
    /// cycle the sort column forwards/backwards, `r` reverses it, `q`, Esc and Ctrl-C
    /// quit.
    pub fn key(&mut self, k: Key) {
        let last = self.rows.len().saturating_sub(1);
        let page = self.page.max(1);
        match k {
            Key::Up | Key::Char('k') => self.select(self.selected.saturating_sub(1)),
            Key::Down | Key::Char('j') => self.select((self.selected + 1).min(last)),
            Key::PageUp => self.select(self.selected.saturating_sub(page)),
            Key::PageDown => self.select((self.selected + page).min(last)),
            Key::Home => self.select(0),
            Key::End => self.select(last),
            Key::Char('s') => {
                self.sort = self.sort.next();
                self.resort();
            }
            Key::Char('S') => {
                self.sort = self.sort.prev();
                self.resort();
            }
            Key::Char('r') => {
                self.reverse = !self.reverse;
                self.resort();
            }
            Key::Char('q') | Key::Esc | Key::Interrupt => self.quit = true,
            Key::Char(_) => {}
        }
    }

    /// The selected line.
    pub fn selected_row(&self) -> Option<&Row> {
        self.rows.get(self.selected)
    }

    fn select(&mut self, i: usize) {
        self.selected = i;
        self.selected_key = self.rows.get(i).map(|r| r.key.clone());
    }

    /// Sorts the view's lines again, keeping the selection on the same line (or the same
    /// place when that line is gone).
    fn resort(&mut self) {
        let Some(v) = &self.view else { return };
        self.rows = sorted(&v.rows, self.sort, self.reverse);
        let at = self
            .selected_key
            .as_ref()
            .and_then(|k| self.rows.iter().position(|r| &r.key == k));
        let i = at.unwrap_or(self.selected.min(self.rows.len().saturating_sub(1)));
        self.select(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::program;

    fn names(rows: &[Row]) -> Vec<&str> {
        rows.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn sorting_orders_siblings_and_keeps_the_tree() {
        let mut t = Tracker::new();
        t.observe(&program(1, 0, 0));
        let v = t.observe(&program(2, 0, 0));
        let tree = names(&v.rows);
        assert_eq!(names(&sorted(&v.rows, SortBy::Tree, false)), tree);
        // busiest first: a (1000/s), w[0], w[1] (100/s), b (50/s), sub (none); c stays
        // under sub; the Pool and the queue keep their sections
        assert_eq!(
            names(&sorted(&v.rows, SortBy::Rate, false)),
            [
                "root",
                "a",
                "w[0]",
                "w[1]",
                "b",
                "sub",
                "c",
                "pool-1",
                "pool-1[0]",
                "pool-1[1]",
                "jobs"
            ]
        );
        assert_eq!(
            names(&sorted(&v.rows, SortBy::Rate, true))[..7],
            ["root", "sub", "c", "b", "w[0]", "w[1]", "a"]
        );
        assert_eq!(
            names(&sorted(&v.rows, SortBy::Name, true))[1..7],
            ["w[1]", "w[0]", "sub", "c", "b", "a"]
        );
        assert_eq!(
            names(&sorted(&v.rows, SortBy::Pid, false))[1..6],
            ["a", "b", "w[0]", "w[1]", "sub"]
        );
    }

    #[test]
    fn lines_without_a_pid_sort_last_by_pid() {
        let mut p = program(1, 0, 0);
        let kids = &mut p.supervisors[0].children;
        // a (101) is not running; b gets a pid below every other
        kids[0].pid = None;
        kids[0].state = "restarting".to_string();
        kids[1].pid = Some(50);
        let v = Tracker::new().observe(&p);
        assert_eq!(
            names(&sorted(&v.rows, SortBy::Pid, false))[1..7],
            ["b", "w[0]", "w[1]", "sub", "c", "a"]
        );
        // reversed: highest first, so the one without a pid comes first
        assert_eq!(
            names(&sorted(&v.rows, SortBy::Pid, true))[1..7],
            ["a", "sub", "c", "w[1]", "w[0]", "b"]
        );
    }

    #[test]
    fn keys_move_sort_and_quit() {
        let mut app = App::new();
        app.key(Key::Down); // nothing to move over yet: no panic
        assert_eq!(app.selected, 0);
        app.update(Ok(program(1, 0, 0)));
        app.update(Ok(program(2, 0, 0)));
        assert_eq!(app.selected_row().unwrap().name, "root");
        app.key(Key::Down);
        app.key(Key::Down);
        assert_eq!(app.selected_row().unwrap().name, "b");
        app.key(Key::Up);
        assert_eq!(app.selected_row().unwrap().name, "a");
        app.key(Key::End);
        assert_eq!(app.selected_row().unwrap().name, "jobs");
        app.key(Key::Down);
        assert_eq!(
            app.selected_row().unwrap().name,
            "jobs",
            "stays on the last"
        );
        app.key(Key::Home);
        app.key(Key::Up);
        assert_eq!(app.selected, 0);
        app.key(Key::PageDown);
        assert_eq!(
            app.selected, 10,
            "a page of 10 (the default) from 0, at most the last"
        );

        // the selection follows its line through a re-sort
        app.key(Key::Home);
        app.key(Key::Down);
        assert_eq!(app.selected_row().unwrap().name, "a");
        for _ in 0..6 {
            app.key(Key::Char('s'));
        }
        assert_eq!(app.sort, SortBy::Rate);
        app.key(Key::Char('r'));
        assert_eq!(app.selected_row().unwrap().name, "a");
        assert_eq!(
            app.selected, 6,
            "a, the busiest, is last among its 5 siblings"
        );
        app.key(Key::Char('S'));
        assert_eq!(app.sort, SortBy::Msgs);
        for _ in 0..SortBy::ALL.len() {
            app.key(Key::Char('s'));
        }
        assert_eq!(app.sort, SortBy::Msgs, "s cycles through every column");

        // a failed refresh keeps the view and says why
        app.update(Err("connection refused".to_string()));
        assert_eq!(app.error.as_deref(), Some("connection refused"));
        assert_eq!(app.rows.len(), 11);
        app.update(Ok(program(3, 0, 0)));
        assert_eq!(app.error, None);

        assert!(!app.quit);
        app.key(Key::Char('x'));
        assert!(!app.quit);
        app.key(Key::Char('q'));
        assert!(app.quit);
        for k in [Key::Esc, Key::Interrupt] {
            let mut app = App::new();
            app.key(k);
            assert!(app.quit);
        }
    }
}
