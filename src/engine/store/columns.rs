//! Rows sent to PostgreSQL as one binary array per column, read back by `unnest`: a
//! statement's text is the same for any number of rows (prepared once, never near the
//! limit on bound parameters), and unlike JSON nothing is written or parsed per row.
//!
//! The driver's arrays hold no NULL, so a nullable column sends a placeholder where a
//! row has no value and sets the row's bit for that column in one more array, `nulls`;
//! the statement reads the column as `CASE WHEN nulls & bit = 0 THEN column END`.
use sea_orm::Value;

/// The columns of some rows, in the order they were added.
pub(crate) struct Columns {
    /// Name, SQL element type, and the bit of a nullable column.
    columns: Vec<(&'static str, &'static str, Option<i32>)>,
    values: Vec<Value>,
    nulls: Vec<i32>,
    next_bit: i32,
}

impl Columns {
    pub fn new(rows: usize) -> Self {
        Columns {
            columns: Vec::new(),
            values: Vec::new(),
            nulls: vec![0; rows],
            next_bit: 1,
        }
    }

    pub fn text<'a>(&mut self, name: &'static str, rows: impl Iterator<Item = &'a str>) {
        let values: Vec<String> = rows.map(str::to_string).collect();
        self.add(name, "text", None, values.into());
    }

    pub fn bigint(&mut self, name: &'static str, rows: impl Iterator<Item = i64>) {
        self.add(name, "bigint", None, rows.collect::<Vec<i64>>().into());
    }

    /// A nullable text column: its rows' values, or "" as the placeholder.
    pub fn nullable_text<'a>(
        &mut self,
        name: &'static str,
        rows: impl Iterator<Item = Option<&'a str>>,
    ) {
        let bit = self.bit();
        let values: Vec<String> = rows
            .zip(&mut self.nulls)
            .map(|(value, nulls)| {
                if value.is_none() {
                    *nulls |= bit;
                }
                value.unwrap_or_default().to_string()
            })
            .collect();
        self.add(name, "text", Some(bit), values.into());
    }

    fn bit(&mut self) -> i32 {
        let bit = self.next_bit;
        assert!(bit > 0, "more nullable columns than bits in `nulls`");
        self.next_bit = bit.wrapping_shl(1);
        bit
    }

    fn add(&mut self, name: &'static str, sql_type: &'static str, bit: Option<i32>, values: Value) {
        self.columns.push((name, sql_type, bit));
        self.values.push(values);
    }

    /// The rows as a table `alias`, with its parameters numbered from `$first`:
    /// `unnest($1::text[], …) AS alias(id, …, nulls)`.
    pub fn from(&self, alias: &str, first: usize) -> String {
        let mut arrays = Vec::new();
        let mut names = Vec::new();
        for (i, (name, sql_type, _)) in self.columns.iter().enumerate() {
            arrays.push(format!("${}::{sql_type}[]", first + i));
            names.push(*name);
        }
        if self.has_nullable() {
            arrays.push(format!("${}::integer[]", first + self.columns.len()));
            names.push("nulls");
        }
        format!(
            "unnest({}) AS {alias}({})",
            arrays.join(", "),
            names.join(", ")
        )
    }

    /// The columns' values, in order, for a SELECT from [`Columns::from`]; `instead`,
    /// an expression to select in place of one column.
    pub fn select(&self, instead: Option<(&str, &str)>) -> String {
        let values: Vec<String> = self
            .columns
            .iter()
            .map(|(name, _, bit)| match (instead, bit) {
                (Some((column, expression)), _) if column == *name => {
                    format!("{expression} AS {name}")
                }
                (_, Some(bit)) => format!("CASE WHEN nulls & {bit} = 0 THEN {name} END AS {name}"),
                (_, None) => name.to_string(),
            })
            .collect();
        values.join(", ")
    }

    /// The columns' names, in order, for an INSERT's column list.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, ..)| *name).collect();
        names.join(", ")
    }

    pub fn into_values(self) -> Vec<Value> {
        let has_nullable = self.has_nullable();
        let mut values = self.values;
        if has_nullable {
            values.push(self.nulls.into());
        }
        values
    }

    fn has_nullable(&self) -> bool {
        self.next_bit != 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nullable_column_reads_its_placeholder_as_null() {
        let mut c = Columns::new(2);
        c.text("id", ["a", "b"].into_iter());
        c.nullable_text("user_id", [Some("u"), None].into_iter());
        c.nullable_text("key", [None, Some("k")].into_iter());
        c.bigint("due_at", [1, 2].into_iter());
        assert_eq!(
            c.from("r", 3),
            "unnest($3::text[], $4::text[], $5::text[], $6::bigint[], $7::integer[]) \
             AS r(id, user_id, key, due_at, nulls)"
        );
        assert_eq!(
            c.select(None),
            "id, CASE WHEN nulls & 1 = 0 THEN user_id END AS user_id, \
             CASE WHEN nulls & 2 = 0 THEN key END AS key, due_at"
        );
        assert_eq!(
            c.select(Some(("due_at", "due_at + 1"))),
            "id, CASE WHEN nulls & 1 = 0 THEN user_id END AS user_id, \
             CASE WHEN nulls & 2 = 0 THEN key END AS key, due_at + 1 AS due_at"
        );
        let values = c.into_values();
        assert_eq!(values.len(), 5);
        assert_eq!(values[4], Value::from(vec![2i32, 1]));
    }
}
