// Memory read bandwidth of this machine, the ceiling the batch-1 layers are compared with
// (docs/PERF.md, session 7): sums an MB-sized float array with AVX-512 loads, 1 and 2 threads,
// best of 20; `huge` as the first argument asks for transparent huge pages first.
//   gcc -O2 -fopenmp -mavx512f scripts/experiments/membw.c -o /tmp/membw
//   for mb in 8 48 256 1024; do MB=$mb /tmp/membw; MB=$mb /tmp/membw huge; done
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
#include <sys/mman.h>
#include <immintrin.h>
int main(int argc,char**argv){ size_t n = (size_t)(getenv("MB") ? atol(getenv("MB")) : 256)<<20>>2; int huge=argc>1; float *a = aligned_alloc(2<<20, n*4); if(huge) madvise(a,n*4,MADV_HUGEPAGE); for(size_t i=0;i<n;i++) a[i]=i*1e-9f;
 for (int t=1;t<=2;t++){ omp_set_num_threads(t); double best=1e9; float s=0;
  for(int r=0;r<20;r++){ double t0=omp_get_wtime(); __m512 acc=_mm512_setzero_ps();
   #pragma omp parallel
   { __m512 a0=_mm512_setzero_ps(),a1=a0,a2=a0,a3=a0;
   #pragma omp for
   for(size_t i=0;i<n;i+=64){ a0=_mm512_add_ps(a0,_mm512_loadu_ps(a+i)); a1=_mm512_add_ps(a1,_mm512_loadu_ps(a+i+16));a2=_mm512_add_ps(a2,_mm512_loadu_ps(a+i+32));a3=_mm512_add_ps(a3,_mm512_loadu_ps(a+i+48));}
   #pragma omp critical
   acc=_mm512_add_ps(acc,_mm512_add_ps(_mm512_add_ps(a0,a1),_mm512_add_ps(a2,a3))); }
   double dt=omp_get_wtime()-t0; if(dt<best)best=dt; s+=_mm512_reduce_add_ps(acc);}
  printf("%s threads %d: %.1f GB/s (%g)\n", huge?"huge":"4k", t, n*4/best/1e9, s);} }
