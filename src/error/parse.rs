//! The model's text forms read into the crate's error: `FromStr` for the
//! types stored as text. They live here, not in the model, so that the
//! model imports nothing of the crate (the error type holds model ids).

use std::str::FromStr;

use super::Error;
use crate::model::{
    ExecutionStatus, InvalidText, LogPartitionUnit, LogStream, ScriptType, TaskStatus, Timestamp,
};

impl From<InvalidText> for Error {
    fn from(invalid: InvalidText) -> Self {
        Error::validation(invalid.field, invalid.message)
    }
}

impl FromStr for TaskStatus {
    type Err = Error;

    /// One of [`TaskStatus::ALL`] by its text form; anything else is an
    /// [`Error::Validation`] on `status` naming the allowed values.
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(TaskStatus::parse_text(s)?)
    }
}

impl FromStr for ExecutionStatus {
    type Err = Error;

    /// One of [`ExecutionStatus::ALL`] by its text form; anything else is
    /// an [`Error::Validation`] on `status` naming the allowed values.
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(ExecutionStatus::parse_text(s)?)
    }
}

impl FromStr for LogStream {
    type Err = Error;

    /// One of [`LogStream::ALL`] by its text form; anything else is an
    /// [`Error::Validation`] on `stream` naming the allowed values.
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(LogStream::parse_text(s)?)
    }
}

impl FromStr for LogPartitionUnit {
    type Err = Error;

    /// One of [`LogPartitionUnit::ALL`] by its text form; anything else is
    /// an [`Error::Validation`] on `partition` naming the allowed values.
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(LogPartitionUnit::parse_text(s)?)
    }
}

impl FromStr for ScriptType {
    type Err = Error;

    /// One of [`ScriptType::ALL`] by its text form; anything else is an
    /// [`Error::Validation`] on `script_type` naming the allowed values.
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(ScriptType::parse_text(s)?)
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    /// Reads RFC 3339 with any offset (converted to UTC) and any number of
    /// fractional digits (cut to microseconds), or the expanded form
    /// [`Display`](std::fmt::Display) writes for years before 0000.
    /// Anything else is an [`Error::Validation`] on the field `timestamp`.
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(Timestamp::parse_text(s)?)
    }
}
