"""Gold features: pure functions over silver (and gold) DataFrames, no I/O.

`pricing` builds the SKU-day labels and the point-in-time pricing features, `shipping` the per-order
parcel, billable weight and rate-card baseline, `delivery_zone` the postal code -> zone mapping, and
`point_in_time` the as-of joins that keep training sets free of future data (docs/features.md).
"""
