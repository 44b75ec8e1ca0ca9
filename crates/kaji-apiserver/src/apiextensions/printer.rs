//! Table output of custom resources: a CRD version's `additionalPrinterColumns` (JSONPath,
//! types and formats), as upstream's `tableconvertor`.
