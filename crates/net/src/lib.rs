//! seccs share network: files secret-shared t-of-n across servers through a broker.
