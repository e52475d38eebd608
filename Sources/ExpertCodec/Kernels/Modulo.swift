/// `(a + b) mod experts` for `a, b < experts`.
@inline(__always)
func addModulo(_ a: Int, _ b: Int, _ experts: Int) -> Int {
    let sum = a &+ b
    return sum >= experts ? sum &- experts : sum
}

/// `(a + b) mod experts` in the scratch type, `modulus` being `experts` truncated to it (0 when
/// experts is 2^bits of the type, where wrapping is the modulo). Branch-free, so loops vectorize.
@inline(__always)
func addModulo<S: PlaneScalar>(_ a: S, _ b: S, _ modulus: S) -> S {
    let sum = a &+ b
    // Reduce when the sum reached experts, or wrapped past the type (only possible when the
    // modulus is 0, where wrapping already reduced it).
    return modulus != 0 && (sum >= modulus || sum < a) ? sum &- modulus : sum
}
