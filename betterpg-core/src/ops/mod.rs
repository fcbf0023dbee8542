//! The operations, one module per verb, each a function the
//! [`crate::BranchManager`] facade calls.

pub mod doctor;
pub mod logs;
