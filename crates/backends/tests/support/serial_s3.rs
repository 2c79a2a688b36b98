//! `s3s-fs` with the writes to each object made one at a time: shared by
//! the example server (`examples/s3_fs_server.rs`) and the tests' server.
//!
//! `s3s-fs` checks a conditional write's `If-None-Match: *` or `If-Match`
//! and then writes, as two steps: two creates of one object at the same
//! instant could both pass the check and both succeed, so two processes
//! could both take a store's writer lease. Here every write to an object
//! (`PutObject`, `CopyObject` onto it, `CompleteMultipartUpload`,
//! `DeleteObject`, `DeleteObjects`) holds a lock for that object from
//! before the check until the object is written, as S3 does atomically.
//! Reads and the writes to other objects go on beside it.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

/// How many locks the objects share (by a hash of bucket and key): writes
/// to two objects that share one wait for each other, which is only slower.
const STRIPES: u64 = 64;

/// `s3s_fs::FileSystem` with its writes to one object serialized.
pub struct SerialFs {
    inner: s3s_fs::FileSystem,
    stripes: Vec<tokio::sync::Mutex<()>>,
    hasher: RandomState,
}

impl SerialFs {
    pub fn new(inner: s3s_fs::FileSystem) -> Self {
        Self {
            inner,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn stripe(&self, bucket: &str, key: &str) -> usize {
        // Below STRIPES, so it fits any usize.
        usize::try_from(self.hasher.hash_one((bucket, key)) % STRIPES).unwrap_or(0)
    }

    /// Runs `write` holding the locks of `stripes` (taken in ascending
    /// order, so two writes never wait for each other's).
    async fn locked<T>(&self, mut stripes: Vec<usize>, write: impl Future<Output = T>) -> T {
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            if let Some(lock) = self.stripes.get(stripe) {
                guards.push(lock.lock().await);
            }
        }
        let answer = write.await;
        drop(guards);
        answer
    }
}

/// The future an `async_trait` method returns.
type Answer<'a, O> = Pin<Box<dyn Future<Output = S3Result<S3Response<O>>> + Send + 'a>>;

/// Methods passed on to `s3s-fs` as they are.
macro_rules! passed_on {
    ($($op:ident: $input:ty => $output:ty),* $(,)?) => {$(
        fn $op<'life0, 'async_trait>(
            &'life0 self,
            req: S3Request<$input>,
        ) -> Answer<'async_trait, $output>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            self.inner.$op(req)
        }
    )*};
}

/// Methods passed on to `s3s-fs` under the locks of the objects they write.
macro_rules! serialized {
    ($($op:ident: $input:ty => $output:ty, |$this:ident, $req:ident| $stripes:expr);* $(;)?) => {$(
        fn $op<'life0, 'async_trait>(
            &'life0 self,
            req: S3Request<$input>,
        ) -> Answer<'async_trait, $output>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            let stripes = {
                let ($this, $req) = (self, &req.input);
                $stripes
            };
            Box::pin(self.locked(stripes, self.inner.$op(req)))
        }
    )*};
}

impl S3 for SerialFs {
    passed_on! {
        abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
        create_bucket: CreateBucketInput => CreateBucketOutput,
        create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
        delete_bucket: DeleteBucketInput => DeleteBucketOutput,
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
        get_object: GetObjectInput => GetObjectOutput,
        head_bucket: HeadBucketInput => HeadBucketOutput,
        head_object: HeadObjectInput => HeadObjectOutput,
        list_buckets: ListBucketsInput => ListBucketsOutput,
        list_objects: ListObjectsInput => ListObjectsOutput,
        list_objects_v2: ListObjectsV2Input => ListObjectsV2Output,
        list_parts: ListPartsInput => ListPartsOutput,
        upload_part: UploadPartInput => UploadPartOutput,
        upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput,
    }

    serialized! {
        put_object: PutObjectInput => PutObjectOutput,
            |this, input| vec![this.stripe(&input.bucket, &input.key)];
        copy_object: CopyObjectInput => CopyObjectOutput,
            |this, input| vec![this.stripe(&input.bucket, &input.key)];
        complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
            |this, input| vec![this.stripe(&input.bucket, &input.key)];
        delete_object: DeleteObjectInput => DeleteObjectOutput,
            |this, input| vec![this.stripe(&input.bucket, &input.key)];
        delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
            |this, input| input
                .delete
                .objects
                .iter()
                .map(|object| this.stripe(&input.bucket, &object.key))
                .collect();
    }
}
