//! The interactive approval queue: `agentgrid approvals` on a terminal.
//!
//! A list of pending approvals with their summary columns, a detail view with the diff, and
//! the decisions: `a` approves (and lands the work when the policy says so), `r` opens the
//! person's editor for the feedback of a rejection (a text box when no `$VISUAL`/`$EDITOR` is
//! set), `?` shows the keys, `q` quits. Every decision goes through the same application command as
//! `agentgrid approvals approve|reject`, so the rules (a decision is made once) are the same,
//! and a refusal is shown on the status line instead of ending the program. Agent text is
//! escaped before it reaches the screen, like everywhere else agentgrid prints it.

use domain::{ApprovalId, ApprovalState, Decision};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row as TableRow, Table, TableState};
use ratatui::{DefaultTerminal, Frame};

use super::approvals::{HEADER, Queue, Row, cells, decided_line, detail_lines, now};
use super::feedback_editor;
use crate::exit;
use crate::output::{multi_line, one_line};

const HELP: &[&str] = &[
    "up/down, k/j   move (scroll in the detail)",
    "PgUp/PgDn      scroll a page in the detail",
    "Enter          open the selected approval: detail and diff",
    "a              approve",
    "r              reject: write the feedback in $VISUAL/$EDITOR (empty cancels),",
    "               or, with neither set, type it here: Enter sends it, Esc cancels",
    "g              reload the queue",
    "Esc            back to the list",
    "?              this help",
    "q              quit",
];

enum View {
    List,
    Detail {
        id: ApprovalId,
        lines: Vec<String>,
        scroll: usize,
    },
}

struct Screen {
    rows: Vec<Row>,
    table: TableState,
    view: View,
    help: bool,
    /// The feedback being typed for a rejection of this approval.
    feedback: Option<(ApprovalId, String)>,
    status: String,
}

impl Screen {
    fn selected(&self) -> Option<ApprovalId> {
        match &self.view {
            View::Detail { id, .. } => Some(*id),
            View::List => self
                .table
                .selected()
                .and_then(|i| self.rows.get(i))
                .map(|r| r.line.approval.id),
        }
    }
}

pub async fn run(queue: Queue) -> anyhow::Result<u8> {
    let mut terminal = ratatui::init();
    let result = event_loop(&queue, &mut terminal).await;
    ratatui::restore();
    result
}

async fn event_loop(queue: &Queue, terminal: &mut DefaultTerminal) -> anyhow::Result<u8> {
    let mut screen = Screen {
        rows: Vec::new(),
        table: TableState::default(),
        view: View::List,
        help: false,
        feedback: None,
        status: String::new(),
    };
    reload(queue, &mut screen).await?;
    loop {
        terminal.draw(|frame| draw(frame, &mut screen))?;
        let event = tokio::task::spawn_blocking(event::read).await??;
        let Event::Key(key) = event else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        if !handle(queue, &mut screen, key, terminal).await? {
            return Ok(exit::OK);
        }
    }
}

async fn reload(queue: &Queue, screen: &mut Screen) -> anyhow::Result<()> {
    screen.rows = queue.rows(Some(ApprovalState::Pending)).await?;
    let selected = screen.table.selected().unwrap_or(0);
    screen.table.select(if screen.rows.is_empty() {
        None
    } else {
        Some(selected.min(screen.rows.len() - 1))
    });
    Ok(())
}

/// Handles one key; false when the program should end.
async fn handle(
    queue: &Queue,
    screen: &mut Screen,
    key: KeyEvent,
    terminal: &mut DefaultTerminal,
) -> anyhow::Result<bool> {
    if let Some((id, text)) = &mut screen.feedback {
        match key.code {
            KeyCode::Esc => {
                screen.feedback = None;
                screen.status = "rejection cancelled".into();
            }
            KeyCode::Enter => {
                let (id, feedback) = (*id, text.clone());
                screen.feedback = None;
                decide(queue, screen, id, Decision::Reject { feedback }).await?;
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => text.push(c),
            _ => {}
        }
        return Ok(true);
    }
    if screen.help {
        screen.help = false;
        return Ok(!matches!(key.code, KeyCode::Char('q')));
    }
    let page = usize::from(terminal.size()?.height.saturating_sub(4)).max(1);
    match key.code {
        KeyCode::Char('q') => return Ok(false),
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Ok(false),
        KeyCode::Char('?') => screen.help = true,
        KeyCode::Char('g') => {
            reload(queue, screen).await?;
            screen.status = "reloaded".into();
        }
        KeyCode::Esc | KeyCode::Backspace | KeyCode::Left => screen.view = View::List,
        KeyCode::Char('a') => {
            if let Some(id) = screen.selected() {
                decide(queue, screen, id, Decision::Approve).await?;
            }
        }
        KeyCode::Char('r') => {
            if let Some(id) = screen.selected() {
                match feedback_editor::chosen() {
                    Some(editor) => reject_in_editor(queue, screen, terminal, editor, id).await?,
                    None => screen.feedback = Some((id, String::new())),
                }
            }
        }
        KeyCode::Enter | KeyCode::Right => {
            if let (View::List, Some(id)) = (&screen.view, screen.selected()) {
                match queue.detail(id).await {
                    Ok((detail, review)) => {
                        let mut lines = detail_lines(&detail, review.as_ref(), now());
                        if let Some(r) = &review {
                            lines.push(String::new());
                            lines.push("diff:".into());
                            lines.extend(multi_line(&r.patch).lines().map(str::to_owned));
                        }
                        screen.view = View::Detail {
                            id,
                            lines,
                            scroll: 0,
                        };
                    }
                    Err(e) => screen.status = format!("{e:#}"),
                }
            }
        }
        KeyCode::Up | KeyCode::Char('k') => move_by(screen, -1),
        KeyCode::Down | KeyCode::Char('j') => move_by(screen, 1),
        KeyCode::PageUp => move_by(screen, -(page as isize)),
        KeyCode::PageDown => move_by(screen, page as isize),
        _ => {}
    }
    Ok(true)
}

fn move_by(screen: &mut Screen, by: isize) {
    match &mut screen.view {
        View::Detail { lines, scroll, .. } => {
            let max = lines.len().saturating_sub(1);
            *scroll = scroll.saturating_add_signed(by).min(max);
        }
        View::List if !screen.rows.is_empty() => {
            let at = screen.table.selected().unwrap_or(0);
            let max = screen.rows.len() - 1;
            screen
                .table
                .select(Some(at.saturating_add_signed(by).min(max)));
        }
        View::List => {}
    }
}

/// A rejection whose feedback is written in the person's editor: the queue leaves the
/// terminal to it and comes back when it ends. Empty feedback cancels the rejection.
async fn reject_in_editor(
    queue: &Queue,
    screen: &mut Screen,
    terminal: &mut DefaultTerminal,
    editor: String,
    id: ApprovalId,
) -> anyhow::Result<()> {
    ratatui::restore();
    let written = queue.feedback_in_editor(editor, id).await;
    // A new terminal starts from empty buffers, so the next draw repaints the whole screen.
    *terminal = ratatui::init();
    match written {
        Ok(Some(feedback)) => decide(queue, screen, id, Decision::Reject { feedback }).await?,
        Ok(None) => {
            screen.status = format!("the feedback was empty: approval #{id} stays pending");
        }
        Err(e) => screen.status = format!("not decided: {e:#}"),
    }
    Ok(())
}

async fn decide(
    queue: &Queue,
    screen: &mut Screen,
    id: ApprovalId,
    decision: Decision,
) -> anyhow::Result<()> {
    screen.status = match queue.decide(id, decision).await {
        Ok(decided) => decided_line(&decided),
        // A refusal (decided meanwhile by someone else, say) is news, not the end.
        Err(e) => format!("not decided: {e:#}"),
    };
    screen.view = View::List;
    reload(queue, screen).await
}

fn draw(frame: &mut Frame, screen: &mut Screen) {
    let [main, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    match &screen.view {
        View::List => draw_list(frame, main, screen),
        View::Detail { id, lines, scroll } => {
            let text: Vec<Line> = lines
                .iter()
                .skip(*scroll)
                .map(|l| Line::raw(one_line_keeping_tabs(l)))
                .collect();
            let title = format!(" approval #{id} — a approve · r reject · Esc back · ? help ");
            let block = Block::default().borders(Borders::ALL).title(title);
            frame.render_widget(Paragraph::new(text).block(block), main);
        }
    }
    let line = if screen.status.is_empty() {
        format!("{} pending · ? help · q quit", screen.rows.len())
    } else {
        one_line(&screen.status).into_owned()
    };
    frame.render_widget(Paragraph::new(line), status);
    if let Some((id, text)) = &screen.feedback {
        let area = centered(frame.area(), 70, 5);
        frame.render_widget(Clear, area);
        let block = Block::default().borders(Borders::ALL).title(format!(
            " reject #{id}: feedback for the next execution (Enter sends, Esc cancels) "
        ));
        frame.render_widget(
            Paragraph::new(format!("{}_", one_line(text))).block(block),
            area,
        );
    }
    if screen.help {
        let area = centered(frame.area(), 70, HELP.len() as u16 + 2);
        frame.render_widget(Clear, area);
        let lines: Vec<Line> = HELP.iter().map(|h| Line::raw(*h)).collect();
        let block = Block::default()
            .borders(Borders::ALL)
            .title(" keys (any key closes) ");
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }
}

fn draw_list(frame: &mut Frame, area: Rect, screen: &mut Screen) {
    let now = now();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" approvals — Enter detail · a approve · r reject · ? help · q quit ");
    if screen.rows.is_empty() {
        let text = "no approvals are waiting (g reloads)";
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    }
    let rows: Vec<TableRow> = screen
        .rows
        .iter()
        .map(|r| {
            let mut c = cells(r, now);
            c.pop(); // every row here is pending
            TableRow::new(c.into_iter().map(|s| one_line(&s).into_owned()))
        })
        .collect();
    let widths = [
        Constraint::Length(4),
        Constraint::Length(6),
        Constraint::Fill(1),
        Constraint::Length(12),
        Constraint::Length(5),
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(9),
    ];
    let header = TableRow::new(HEADER[..HEADER.len() - 1].iter().copied())
        .style(Style::default().add_modifier(Modifier::BOLD));
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    frame.render_stateful_widget(table, area, &mut screen.table);
}

/// A line of the detail view: control characters escaped, tabs as spaces (a terminal cell
/// cannot show a tab).
fn one_line_keeping_tabs(line: &str) -> String {
    one_line(&line.replace('\t', "    ")).into_owned()
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}
