// The archive's API speaks the codec's types (Schema, ExpertID, CodecError).
@_exported import ExpertCodec
