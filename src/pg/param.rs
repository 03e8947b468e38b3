//! The parameters of the repositories' statements, with the PostgreSQL type
//! each is declared as when a statement is sent unnamed.
//!
//! A named statement is prepared first and the server infers its parameter
//! types; behind a transaction-mode pooler nothing may be prepared ahead
//! (the next message may reach another server connection), so a statement
//! goes out as one unnamed `Parse`/`Bind`/`Execute` whose parameter types
//! the client declares ([`PoolerMode::Transaction`](crate::PoolerMode)).
//! [`Param`] gives that type for exactly the Rust types the crate binds: a
//! parameter of any other type does not compile, rather than being declared
//! as something the server then casts or refuses.
//!
//! The declared types are the ones the statements' SQL expects: `text` for
//! the `varchar` columns (the server compares and assigns `text` to them
//! without a cast, and their indexes use `text`'s operators anyway),
//! `int4`/`int8`/`float8` where the SQL compares with an `integer` column or
//! takes a `LIMIT` or a number of seconds.

use postgres_types::{ToSql, Type};
use uuid::Uuid;

use super::jsonb::Jsonb;
use crate::model::{
    ExecutionId, ExecutionStatus, ScriptType, TaskId, TaskStatus, Timestamp, UserId,
};

/// A statement parameter and the type it is declared as when sent unnamed.
pub(crate) trait Param: ToSql + Sync {
    /// The declared type.
    fn param_type(&self) -> Type;

    /// The value, for the driver.
    fn as_sql(&self) -> &(dyn ToSql + Sync);
}

/// The PostgreSQL type of a Rust type the crate binds, known without a
/// value (so `None` has one too).
pub(crate) trait SqlType {
    /// The type a value is declared as.
    const TYPE: Type;
}

/// A [`SqlType`] that may be an array's element.
pub(crate) trait Element: SqlType {
    /// The type of an array of these.
    const ARRAY: Type;
}

impl<T: SqlType + ToSql + Sync> Param for T {
    fn param_type(&self) -> Type {
        T::TYPE
    }

    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        self
    }
}

macro_rules! sql_type {
    ($($rust:ty => $scalar:ident, $array:ident;)*) => {
        $(
            impl SqlType for $rust {
                const TYPE: Type = Type::$scalar;
            }

            impl Element for $rust {
                const ARRAY: Type = Type::$array;
            }
        )*
    };
}

sql_type! {
    Uuid => UUID, UUID_ARRAY;
    UserId => UUID, UUID_ARRAY;
    TaskId => UUID, UUID_ARRAY;
    ExecutionId => UUID, UUID_ARRAY;
    i32 => INT4, INT4_ARRAY;
    i64 => INT8, INT8_ARRAY;
    f64 => FLOAT8, FLOAT8_ARRAY;
    bool => BOOL, BOOL_ARRAY;
    String => TEXT, TEXT_ARRAY;
    &str => TEXT, TEXT_ARRAY;
    ScriptType => TEXT, TEXT_ARRAY;
    TaskStatus => TEXT, TEXT_ARRAY;
    ExecutionStatus => TEXT, TEXT_ARRAY;
    Timestamp => TIMESTAMPTZ, TIMESTAMPTZ_ARRAY;
    Jsonb<'_> => JSONB, JSONB_ARRAY;
}

impl<T: SqlType> SqlType for Option<T> {
    const TYPE: Type = T::TYPE;
}

impl<T: Element> Element for Option<T> {
    const ARRAY: Type = T::ARRAY;
}

impl<T: Element> SqlType for Vec<T> {
    const TYPE: Type = T::ARRAY;
}

impl<T: Element> SqlType for &[T] {
    const TYPE: Type = T::ARRAY;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(value: &dyn Param) -> Type {
        value.param_type()
    }

    #[test]
    fn every_declared_type_accepts_its_value() {
        // to_sql_checked refuses a value whose type does not accept the
        // declared one: what an unnamed statement would fail with.
        let json = serde_json::json!({"a": 1});
        let (uuid, task, text) = (Uuid::nil(), TaskId::new(), String::from("text"));
        let (now, jsonb) = (Timestamp::now(), Jsonb(&json));
        let (none, some) = (None::<i32>, Some("x"));
        let (texts, optional_texts) = (vec!["a", "b"], vec![Some("a"), None]);
        let (ids, documents) = (vec![TaskId::new()], vec![Jsonb(&json)]);
        let cases: Vec<&dyn Param> = vec![
            &uuid,
            &task,
            &7_i32,
            &7_i64,
            &0.5_f64,
            &true,
            &"text",
            &text,
            &ScriptType::Python,
            &TaskStatus::Pending,
            &ExecutionStatus::Running,
            &now,
            &jsonb,
            &none,
            &some,
            &texts,
            &optional_texts,
            &ids,
            &documents,
        ];
        for value in cases {
            let ty = value.param_type();
            let mut out = postgres_types::private::BytesMut::new();
            value
                .as_sql()
                .to_sql_checked(&ty, &mut out)
                .unwrap_or_else(|e| panic!("{ty}: {e}"));
        }
        let ids: &[ExecutionId] = &[ExecutionId::new()];
        assert_eq!(declared(&ids), Type::UUID_ARRAY);
        assert_eq!(declared(&None::<Timestamp>), Type::TIMESTAMPTZ);
    }
}
