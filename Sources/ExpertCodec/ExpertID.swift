/// An integer type rows can be handed over in or decoded into: the numpy dtypes engines use
/// (`|u1 <u2 <i4 <i8` and the other fixed-width integers).
public protocol ExpertID: FixedWidthInteger & Sendable {}

extension UInt8: ExpertID {}
extension Int8: ExpertID {}
extension UInt16: ExpertID {}
extension Int16: ExpertID {}
extension UInt32: ExpertID {}
extension Int32: ExpertID {}
extension UInt64: ExpertID {}
extension Int64: ExpertID {}
