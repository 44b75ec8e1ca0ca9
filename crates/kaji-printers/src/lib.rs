//! kaji-printers
