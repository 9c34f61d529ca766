// Tailwind CSS v4 runs as a PostCSS plugin inside Next.js.
const config = { plugins: { '@tailwindcss/postcss': {} } };
export default config;
