//! The tables the ServiceNow emulator knows: their columns, choices,
//! references and display fields.

pub enum Kind {
    Text,
    Choice(&'static [(&'static str, &'static str)]),
    Reference(&'static str),
    /// Write-only in the record; each write appends a `sys_journal_field` row.
    Journal,
    DateTime,
    Bool,
    Integer,
}

pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

pub struct Table {
    pub name: &'static str,
    pub columns: Vec<Column>,
    /// The column shown as the record's display value (by references to it).
    pub display: &'static str,
    /// `INC` for incidents: numbers INC0010001, INC0010002, ...
    pub number_prefix: Option<&'static str>,
    /// The table it extends (`task` for incident, change_request, incident_task): a reference
    /// to the parent table finds records of its children.
    pub extends: Option<&'static str>,
    /// Values a new record takes when the insert leaves them empty (the dictionary's defaults).
    pub defaults: &'static [(&'static str, &'static str)],
}

impl Table {
    fn extending(mut self, parent: &'static str) -> Table {
        self.extends = Some(parent);
        self
    }

    fn with_defaults(mut self, defaults: &'static [(&'static str, &'static str)]) -> Table {
        self.defaults = defaults;
        self
    }
}

pub const STATES: &[(&str, &str)] =
    &[("1", "New"), ("2", "In Progress"), ("3", "On Hold"), ("6", "Resolved"), ("7", "Closed"), ("8", "Canceled")];
pub const IMPACT: &[(&str, &str)] = &[("1", "1 - High"), ("2", "2 - Medium"), ("3", "3 - Low")];
pub const PRIORITY: &[(&str, &str)] =
    &[("1", "1 - Critical"), ("2", "2 - High"), ("3", "3 - Moderate"), ("4", "4 - Low"), ("5", "5 - Planning")];
pub const CLOSE_CODES: &[(&str, &str)] = &[
    ("Solved (Work Around)", "Solved (Work Around)"),
    ("Solved (Permanently)", "Solved (Permanently)"),
    ("Solved Remotely (Work Around)", "Solved Remotely (Work Around)"),
    ("Solved Remotely (Permanently)", "Solved Remotely (Permanently)"),
    ("Not Solved (Not Reproducible)", "Not Solved (Not Reproducible)"),
    ("Not Solved (Too Costly)", "Not Solved (Too Costly)"),
    ("Closed/Resolved by Caller", "Closed/Resolved by Caller"),
];

/// The default change model's states (ServiceNow docs: "State model and transitions").
pub const CHANGE_STATES: &[(&str, &str)] = &[
    ("-5", "New"),
    ("-4", "Assess"),
    ("-3", "Authorize"),
    ("-2", "Scheduled"),
    ("-1", "Implement"),
    ("0", "Review"),
    ("3", "Closed"),
    ("4", "Canceled"),
];
pub const CHANGE_TYPES: &[(&str, &str)] = &[("normal", "Normal"), ("standard", "Standard"), ("emergency", "Emergency")];
pub const CHANGE_CLOSE_CODES: &[(&str, &str)] =
    &[("successful", "Successful"), ("successful_issues", "Successful with issues"), ("unsuccessful", "Unsuccessful")];
/// The task table's states, which incident_task keeps.
pub const TASK_STATES: &[(&str, &str)] = &[
    ("-5", "Pending"),
    ("1", "Open"),
    ("2", "Work in Progress"),
    ("3", "Closed Complete"),
    ("4", "Closed Incomplete"),
    ("7", "Closed Skipped"),
];
/// A task SLA's stage. With `com.snc.sla.compatibility.breach` (true by default) a breached
/// SLA is `breached`, and one that finished in time `achieved`.
pub const SLA_STAGES: &[(&str, &str)] = &[
    ("in_progress", "In progress"),
    ("paused", "Paused"),
    ("cancelled", "Cancelled"),
    ("completed", "Completed"),
    ("breached", "Breached"),
    ("achieved", "Achieved"),
];
pub const SLA_TYPES: &[(&str, &str)] =
    &[("SLA", "SLA"), ("OLA", "OLA"), ("Underpinning contract", "Underpinning contract")];
pub const SLA_TARGETS: &[(&str, &str)] = &[("response", "Response"), ("resolution", "Resolution")];
pub const APPROVAL_STATES: &[(&str, &str)] = &[
    ("not requested", "Not Yet Requested"),
    ("requested", "Requested"),
    ("approved", "Approved"),
    ("rejected", "Rejected"),
    ("cancelled", "Cancelled"),
    ("not_required", "No Longer Required"),
    ("skipped", "Skipped"),
];

/// ServiceNow's default priority lookup: impact × urgency.
pub fn priority(impact: &str, urgency: &str) -> &'static str {
    match (impact, urgency) {
        ("1", "1") => "1",
        ("1", "2") | ("2", "1") => "2",
        ("1", "3") | ("2", "2") | ("3", "1") => "3",
        ("2", "3") | ("3", "2") => "4",
        _ => "5",
    }
}

fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind }
}

fn system_columns() -> Vec<Column> {
    vec![
        col("sys_id", Kind::Text),
        col("sys_created_on", Kind::DateTime),
        col("sys_created_by", Kind::Text),
        col("sys_updated_on", Kind::DateTime),
        col("sys_updated_by", Kind::Text),
        col("sys_mod_count", Kind::Integer),
        col("sys_class_name", Kind::Text),
    ]
}

fn table(
    name: &'static str,
    display: &'static str,
    number_prefix: Option<&'static str>,
    columns: Vec<Column>,
) -> Table {
    let mut all = system_columns();
    all.extend(columns);
    Table { name, columns: all, display, number_prefix, extends: None, defaults: &[] }
}

fn texts(names: &[&'static str]) -> Vec<Column> {
    names.iter().map(|n| col(n, Kind::Text)).collect()
}

pub fn tables() -> &'static [Table] {
    static TABLES: std::sync::OnceLock<Vec<Table>> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        vec![
            table(
                "incident",
                "number",
                Some("INC"),
                vec![
                    col("number", Kind::Text),
                    col("short_description", Kind::Text),
                    col("description", Kind::Text),
                    col("state", Kind::Choice(STATES)),
                    col("impact", Kind::Choice(IMPACT)),
                    col("urgency", Kind::Choice(IMPACT)),
                    col("priority", Kind::Choice(PRIORITY)),
                    col("category", Kind::Text),
                    col("subcategory", Kind::Text),
                    col("caller_id", Kind::Reference("sys_user")),
                    col("assigned_to", Kind::Reference("sys_user")),
                    col("assignment_group", Kind::Reference("sys_user_group")),
                    col("company", Kind::Reference("core_company")),
                    col("cmdb_ci", Kind::Reference("cmdb_ci")),
                    // "Change Request" and "Caused by Change".
                    col("rfc", Kind::Reference("change_request")),
                    col("caused_by", Kind::Reference("change_request")),
                    col("correlation_id", Kind::Text),
                    col("correlation_display", Kind::Text),
                    col("close_code", Kind::Choice(CLOSE_CODES)),
                    col("close_notes", Kind::Text),
                    col("work_notes", Kind::Journal),
                    col("comments", Kind::Journal),
                    col("active", Kind::Bool),
                    col("opened_at", Kind::DateTime),
                    col("opened_by", Kind::Reference("sys_user")),
                    col("resolved_at", Kind::DateTime),
                    col("resolved_by", Kind::Reference("sys_user")),
                    col("closed_at", Kind::DateTime),
                ],
            )
            .extending("task")
            .with_defaults(&[("state", "1"), ("impact", "3"), ("urgency", "3"), ("active", "true")]),
            table(
                "change_request",
                "number",
                Some("CHG"),
                vec![
                    col("number", Kind::Text),
                    col("short_description", Kind::Text),
                    col("description", Kind::Text),
                    col("type", Kind::Choice(CHANGE_TYPES)),
                    col("state", Kind::Choice(CHANGE_STATES)),
                    col("priority", Kind::Choice(PRIORITY)),
                    // "Planned start date" and "Planned end date".
                    col("start_date", Kind::DateTime),
                    col("end_date", Kind::DateTime),
                    col("assignment_group", Kind::Reference("sys_user_group")),
                    col("assigned_to", Kind::Reference("sys_user")),
                    col("cmdb_ci", Kind::Reference("cmdb_ci")),
                    col("company", Kind::Reference("core_company")),
                    col("close_code", Kind::Choice(CHANGE_CLOSE_CODES)),
                    col("close_notes", Kind::Text),
                    col("work_notes", Kind::Journal),
                    col("comments", Kind::Journal),
                    col("active", Kind::Bool),
                ],
            )
            .extending("task")
            .with_defaults(&[("state", "-5"), ("type", "normal"), ("priority", "4"), ("active", "true")]),
            table(
                "incident_task",
                "number",
                Some("TASK"),
                vec![
                    col("number", Kind::Text),
                    col("incident", Kind::Reference("incident")),
                    col("short_description", Kind::Text),
                    col("description", Kind::Text),
                    col("state", Kind::Choice(TASK_STATES)),
                    col("priority", Kind::Choice(PRIORITY)),
                    col("assignment_group", Kind::Reference("sys_user_group")),
                    col("assigned_to", Kind::Reference("sys_user")),
                    col("cmdb_ci", Kind::Reference("cmdb_ci")),
                    col("close_notes", Kind::Text),
                    col("work_notes", Kind::Journal),
                    col("active", Kind::Bool),
                ],
            )
            .extending("task")
            .with_defaults(&[("state", "1"), ("priority", "4"), ("active", "true")]),
            // SLA definitions, and the SLAs attached to tasks.
            table(
                "contract_sla",
                "name",
                None,
                vec![
                    col("name", Kind::Text),
                    // The table the definition applies to.
                    col("collection", Kind::Text),
                    col("type", Kind::Choice(SLA_TYPES)),
                    col("target", Kind::Choice(SLA_TARGETS)),
                    col("duration", Kind::Text),
                    col("active", Kind::Bool),
                ],
            )
            .with_defaults(&[("type", "SLA"), ("active", "true")]),
            table(
                "task_sla",
                "sla",
                None,
                vec![
                    col("task", Kind::Reference("task")),
                    col("sla", Kind::Reference("contract_sla")),
                    col("stage", Kind::Choice(SLA_STAGES)),
                    col("active", Kind::Bool),
                    col("has_breached", Kind::Bool),
                    col("start_time", Kind::DateTime),
                    col("end_time", Kind::DateTime),
                    // The breach time.
                    col("planned_end_time", Kind::DateTime),
                    col("original_breach_time", Kind::DateTime),
                    col("percentage", Kind::Text),
                    col("business_percentage", Kind::Text),
                    col("time_left", Kind::Text),
                    col("business_time_left", Kind::Text),
                ],
            )
            .with_defaults(&[("stage", "in_progress"), ("active", "true"), ("has_breached", "false")]),
            // Approvals: one row per approver of a task (a change, an incident task).
            table(
                "sysapproval_approver",
                "approver",
                None,
                vec![
                    col("approver", Kind::Reference("sys_user")),
                    col("sysapproval", Kind::Reference("task")),
                    // The record approved (any table) and its table.
                    col("document_id", Kind::Text),
                    col("source_table", Kind::Text),
                    col("state", Kind::Choice(APPROVAL_STATES)),
                    col("comments", Kind::Journal),
                    col("due_date", Kind::DateTime),
                ],
            )
            .with_defaults(&[("state", "requested")]),
            table(
                "sys_user",
                "name",
                None,
                vec![
                    col("user_name", Kind::Text),
                    col("name", Kind::Text),
                    col("first_name", Kind::Text),
                    col("last_name", Kind::Text),
                    col("email", Kind::Text),
                    col("active", Kind::Bool),
                ],
            ),
            table("sys_user_group", "name", None, vec![col("name", Kind::Text), col("description", Kind::Text)]),
            // The customer key shared with Salesforce (u_sf_external_id) is not a column of the
            // platform's: seam's update set adds it to the dictionary.
            table("core_company", "name", None, vec![col("name", Kind::Text), col("customer", Kind::Bool)]),
            table(
                "cmdb_ci",
                "name",
                None,
                vec![col("name", Kind::Text), col("company", Kind::Reference("core_company"))],
            ),
            table(
                "sys_journal_field",
                "value",
                None,
                vec![
                    col("element_id", Kind::Text),
                    col("name", Kind::Text),
                    col("element", Kind::Text),
                    col("value", Kind::Text),
                ],
            ),
            // Deleted records, as the platform audits a delete: the table, the record's sys_id
            // (documentkey) and the record as XML (payload), stamped with when it went.
            table(
                "sys_audit_delete",
                "display_value",
                None,
                texts(&["tablename", "documentkey", "display_value", "payload"]),
            ),
            table(
                "sys_properties",
                "name",
                None,
                vec![
                    col("name", Kind::Text),
                    col("value", Kind::Text),
                    col("type", Kind::Text),
                    col("description", Kind::Text),
                    col("is_private", Kind::Bool),
                    col("ignore_cache", Kind::Bool),
                ],
            ),
            // Business rules (what the push rule of an update set lands in).
            table("sys_script", "name", None, {
                let mut c = texts(&[
                    "name",
                    "collection",
                    "when",
                    "order",
                    "priority",
                    "condition",
                    "filter_condition",
                    "script",
                    "description",
                    "access",
                ]);
                c.extend(
                    [
                        "action_insert",
                        "action_update",
                        "action_delete",
                        "action_query",
                        "active",
                        "advanced",
                        "abort_action",
                    ]
                    .map(|n| col(n, Kind::Bool)),
                );
                c
            }),
            // Fields added to tables: a row with `name` (the table) and `element` (the column).
            table("sys_dictionary", "column_label", None, {
                let mut c =
                    texts(&["name", "element", "column_label", "internal_type", "max_length", "comments", "reference"]);
                c.extend(["active", "mandatory", "read_only", "unique"].map(|n| col(n, Kind::Bool)));
                c
            }),
            table(
                "sys_documentation",
                "label",
                None,
                texts(&["name", "element", "label", "plural", "language", "help", "hint"]),
            ),
            // Update sets retrieved or imported from XML, and their records.
            table(
                "sys_remote_update_set",
                "name",
                None,
                texts(&["name", "state", "description", "remote_sys_id", "application", "commit_date"]),
            ),
            table(
                "sys_update_xml",
                "name",
                None,
                texts(&["name", "action", "type", "target_name", "table", "category", "payload", "remote_update_set"]),
            ),
            table(
                "sys_attachment",
                "file_name",
                None,
                vec![
                    col("file_name", Kind::Text),
                    col("table_name", Kind::Text),
                    col("table_sys_id", Kind::Text),
                    col("content_type", Kind::Text),
                    col("size_bytes", Kind::Integer),
                ],
            ),
        ]
    })
}

pub fn find(name: &str) -> Option<&'static Table> {
    tables().iter().find(|t| t.name == name)
}

/// The tables whose records a reference to `name` may point at: `name` itself, and the
/// tables that extend it (a reference to `task` finds an incident or a change).
pub fn family(name: &str) -> impl Iterator<Item = &'static Table> + '_ {
    tables().iter().filter(move |t| t.name == name || t.extends == Some(name))
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether a column holds numbers (integers, and choices whose values are numbers, as
    /// state and priority): queries compare its values as numbers, others as text.
    pub fn numeric(&self, name: &str) -> bool {
        match self.column(name).map(|c| &c.kind) {
            Some(Kind::Integer) => true,
            Some(Kind::Choice(values)) => values.iter().all(|(v, _)| v.parse::<f64>().is_ok()),
            _ => false,
        }
    }
}

/// ServiceNow's timestamp format, UTC.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}
