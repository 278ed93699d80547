//! binop
