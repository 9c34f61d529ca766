import type { NextConfig } from 'next';

const config: NextConfig = {
  // Internal workspaces are consumed as TypeScript source.
  transpilePackages: ['@pyreach/protocol'],
  poweredByHeader: false,
  reactStrictMode: true,
  typedRoutes: false,
};

export default config;
