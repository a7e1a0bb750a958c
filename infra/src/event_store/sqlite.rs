use commands as _;
