//! CEL (Common Expression Language) for `x-kubernetes-validations` rules.
